import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny run trained once for the sampling and export tests."""
    from hg_keras.config import builtin_config_path
    from hg_keras.training import train

    folder = tmp_path_factory.mktemp("trained")
    path = folder / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(base=builtin_config_path("art4hiv")))
    return train(load_config(path), out=folder / "run", verbose=0)
