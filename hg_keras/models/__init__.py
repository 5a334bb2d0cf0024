"""Generator, critic and the WGAN-GP training model."""

from hg_keras.models.critic import Critic
from hg_keras.models.generator import Generator
from hg_keras.models.wgan_gp import WGANGP

__all__ = ["Critic", "Generator", "WGANGP"]
