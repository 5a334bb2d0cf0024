"""hg-keras: Health Gym v1 (an LSTM WGAN-GP for synthetic patient cohorts) in Keras 3."""

from hg_keras.config import Config, ModelConfig, TrainingConfig, load_config, save_config
from hg_keras.data import CohortTransformer, FeatureLayout, Schema, load_cohort
from hg_keras.errors import InputError

__version__ = "0.1.0"

__all__ = [
    "CohortTransformer",
    "Config",
    "FeatureLayout",
    "InputError",
    "ModelConfig",
    "Schema",
    "TrainingConfig",
    "load_cohort",
    "load_config",
    "save_config",
]
