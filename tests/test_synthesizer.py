"""The Python API: README's example runs as written (tiny sizes), and sample and
the SavedModel draw through one function."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from hg_keras import Synthesizer, noise
from hg_keras.config import builtin_config_path
from hg_keras.errors import InputError
from hg_keras.export import output_name
from hg_keras.run_folder import RunFolder

README = Path(__file__).resolve().parents[1] / "README.md"

# The default config's levers (conditional, persistent draws, patient latent)
# at toy sizes.
TINY_QUICK = """\
extends: {base}
model:
  latent_dim: 8
  hidden_units: 8
  patient_latent_dim: 4
  slow_noise_dim: 2
training:
  patients: 16
  batch_size: 8
  epochs: 1
  curriculum: [3, 6]
  critic_steps: 1                 # each critic step is traced
"""


def readme_example():
    """The ```python block of README's "## Python" section."""
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """README's example run in a fresh folder: only the config and cohort size made tiny."""
    folder = tmp_path_factory.mktemp("readme")
    config = folder / "tiny_quick.yaml"
    config.write_text(TINY_QUICK.format(base=builtin_config_path("quick")))
    code = readme_example()
    assert 'Synthesizer("quick")' in code and "load_cohort(patients=1280)" in code
    code = code.replace('Synthesizer("quick")', f'Synthesizer("{config}")')
    code = code.replace("load_cohort(patients=1280)", "load_cohort(patients=40)")
    assert "synth.evaluate(repeats=1)" in code
    code = code.replace("synth.evaluate(repeats=1)", "synth.evaluate(repeats=1, max_epochs=3)")
    cwd = Path.cwd()
    namespace = {}
    try:
        import os

        os.chdir(folder)
        exec(compile(code, str(README), "exec"), namespace)
    finally:
        os.chdir(cwd)
    namespace["folder"] = folder
    return namespace


def test_readme_example_fits_samples_evaluates_saves_and_exports(example):
    cohort, synthetic = example["cohort"], example["synthetic"]
    assert list(synthetic.columns) == list(cohort.columns)
    assert synthetic["PatientID"].nunique() == 500
    assert set(example["females"]["Gender"]) == {2}
    metrics = example["metrics"]
    assert metrics["setup"]["reference"] == "holdout"
    assert metrics["setup"]["holdout_patients"] == 8  # 20 % of 40
    assert set(metrics["verdicts"]) == {"fidelity", "utility", "privacy"}
    saved = example["folder"] / "my_run"
    assert (saved / "generator.keras").exists()
    # quick detects the embedded cohort's carried-forward values; the run's config says so.
    schema = RunFolder(saved).read_config().schema
    assert schema.variable("VL").carried_when == ("VL (M)", 1)
    assert schema.variable("Rel CD4").carried_when == ("CD4 (M)", 1)
    assert example["synth"].run_dir == saved
    assert list((example["folder"] / "my_run_serving").glob("1/saved_model.pb"))


def test_a_loaded_synthesizer_samples_the_same_patients(example):
    again = Synthesizer.load(example["folder"] / "my_run", data=example["cohort"])
    pd.testing.assert_frame_equal(again.sample(500, seed=0), example["synthetic"])
    assert not again.sample(20, seed=1).equals(again.sample(20, seed=2))


def test_sample_and_serving_draw_through_the_same_function(example, tmp_path, monkeypatch):
    synth = example["synth"]

    def both(tag):
        served = tf.saved_model.load(str(synth.export(tmp_path / tag)))
        out = served.signatures["serving_default"](
            n=tf.constant(6), seq_len=tf.constant(5), seed=tf.constant(3)
        )
        frame = synth.sample(6, seed=3, months=5)
        for column in ("Gender", "Ethnic", "Base Drug Combo", "VL (M)"):
            np.testing.assert_array_equal(
                out[output_name(column)].numpy().ravel(), frame[column], err_msg=column
            )
        np.testing.assert_allclose(out["VL"].numpy().ravel(), frame["VL"], rtol=1e-6)
        return frame

    before = both("a")
    # One constant, moved in its one place: the static groups and the level
    # draws change in the DataFrame and in the SavedModel alike.
    monkeypatch.setattr(noise, "GROUP_STREAM", noise.GROUP_STREAM + 1)
    monkeypatch.setattr(noise, "LEVEL_STREAM", noise.LEVEL_STREAM + 1)
    after = both("b")
    groups = ["Gender", "Ethnic"]
    assert not before[groups].equals(after[groups])
    assert not before["Base Drug Combo"].equals(after["Base Drug Combo"])


def test_an_unfitted_synthesizer_says_what_to_do():
    with pytest.raises(InputError, match="not fitted: call fit"):
        Synthesizer("quick").sample(3)


def test_a_dataframe_with_a_wrong_column_is_refused_by_name(tmp_path):
    from hg_keras import load_cohort

    frame = load_cohort(patients=4).rename(columns={"VL": "viral"})
    with pytest.raises(InputError, match=r"<DataFrame>: missing column\(s\) 'VL'"):
        Synthesizer("quick").fit(frame, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_readme_own_cohort_yaml_gets_the_default_model(tmp_path):
    """README's own-cohort schema, as written, loads with the default model and training;
    it is the schema the variable-length tests train and sample end to end."""
    from cohorts import IRREGULAR_CONFIG

    from hg_keras.config import ModelConfig, TrainingConfig, load_config

    section = README.read_text().split("\n## Your own cohort\n", 1)[1].split("\n## ", 1)[0]
    path = tmp_path / "my_cohort.yaml"
    path.write_text(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    config = load_config(path)
    assert config.model == ModelConfig() and config.model.conditional
    assert config.training == TrainingConfig()
    tested = tmp_path / "tested.yaml"
    tested.write_text(IRREGULAR_CONFIG)
    assert config.schema == load_config(tested).schema
