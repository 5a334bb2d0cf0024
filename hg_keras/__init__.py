"""hg-keras: Health Gym v1 (an LSTM WGAN-GP for synthetic patient cohorts) in Keras 3."""

from hg_keras.conditions import parse_where
from hg_keras.config import Config, ModelConfig, TrainingConfig, load_config, save_config
from hg_keras.data import CohortTransformer, FeatureLayout, Schema, load_cohort
from hg_keras.distribute import make_strategy
from hg_keras.errors import InputError

# Importing the layers and models registers them with Keras, so saved
# generators load in any process that imports hg_keras.
from hg_keras.layers import GateLSTM  # noqa: E402
from hg_keras.models import WGANGP, Critic, Generator  # noqa: E402
from hg_keras.run_folder import RunFolder  # noqa: E402
from hg_keras.synthesizer import Synthesizer  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CohortTransformer",
    "Config",
    "Critic",
    "GateLSTM",
    "Generator",
    "WGANGP",
    "FeatureLayout",
    "InputError",
    "ModelConfig",
    "RunFolder",
    "Schema",
    "Synthesizer",
    "TrainingConfig",
    "load_cohort",
    "load_config",
    "make_strategy",
    "parse_where",
    "save_config",
]
