import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Grappler's graph rewrites cost more than they save on steps a test runs a few
# times: a tiny default run took 0.7x as long without them (median of 6 pairs in
# alternation on the 2-core CPU). Graphs compute the same without them; tests in
# fresh processes (serving, strategies, the CLI in a subprocess) keep them.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

from hg_keras.config import load_config  # noqa: E402

TINY_CONFIG = """\
extends: {base}
model:
  latent_dim: 4
  hidden_units: 8
training:
  patients: 16
  batch_size: 8
  epochs: 1
  curriculum: [3, 6]
  critic_steps: 1                 # each critic step is traced: tracing is the tests' cost
"""


# The default config's model (conditional, joint discrete draws, alignment terms,
# carry-forward detection) at toy sizes.
TINY_DEFAULT_CONFIG = TINY_CONFIG.replace(
    "model:\n", "model:\n  patient_latent_dim: 2\n  slow_noise_dim: 1\n"
)


@pytest.fixture
def tiny_default_config_path(tmp_path):
    """The default model at toy sizes, for the paths every user takes."""
    from hg_keras.config import builtin_config_path

    path = tmp_path / "tiny-default.yaml"
    path.write_text(TINY_DEFAULT_CONFIG.format(base=builtin_config_path("quick")))
    return path


@pytest.fixture(scope="session")
def art_config():
    return load_config("art4hiv")


@pytest.fixture(scope="session")
def art_schema(art_config):
    return art_config.schema


@pytest.fixture
def tiny_config_path(tmp_path):
    """A config with v1's structure at toy sizes: trains in seconds on a CPU."""
    from hg_keras.config import builtin_config_path

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(base=builtin_config_path("art4hiv")))
    return path


# What the embedded cohort's values under its missing flags are: the last observation.
CARRIED = {"VL": ("VL (M)", 1), "CD4": ("CD4 (M)", 1), "Rel CD4": ("CD4 (M)", 1)}


def carrying(schema):
    """`schema` with the embedded cohort's carried-forward values declared."""
    variables = tuple(
        dataclasses.replace(v, carried_when=CARRIED.get(v.name, ())) for v in schema.variables
    )
    return dataclasses.replace(schema, variables=variables)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny run trained once for the sampling and export tests; its schema
    carries VL, CD4 and Rel CD4 forward under their flags and it models the
    drugs and the flags as compounds (``discrete_output: joint``), so sampling
    and the SavedModel are tested with both, and with slow noise channels."""
    from hg_keras.config import builtin_config_path
    from hg_keras.training import train

    folder = tmp_path_factory.mktemp("trained")
    path = folder / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(base=builtin_config_path("art4hiv")))
    config = load_config(path)
    config = dataclasses.replace(
        config,
        schema=carrying(config.schema),
        model=dataclasses.replace(config.model, discrete_output="joint", slow_noise_dim=2),
    )
    return train(config, out=folder / "run", verbose=0)
