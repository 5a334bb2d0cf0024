"""Cohort schema, loading, the embedded cohort, transforms and tf.data pipelines."""

from hg_keras.data.cohort import load_cohort, load_synthetic, read_table, validate_cohort
from hg_keras.data.schema import Schema, Variable
from hg_keras.data.simulate import simulate_art4hiv
from hg_keras.data.transforms import CohortTransformer, FeatureLayout

__all__ = [
    "CohortTransformer",
    "FeatureLayout",
    "Schema",
    "Variable",
    "load_cohort",
    "load_synthetic",
    "read_table",
    "simulate_art4hiv",
    "validate_cohort",
]
