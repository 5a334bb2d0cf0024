"""End to end from a YAML file alone: lengths 1 to 16, irregular visits, static
numeric and categorical attributes, ~40% missing values in one variable."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import tensorflow as tf
from click.testing import CliRunner
from cohorts import IRREGULAR_CONFIG, irregular_cohort

from cli import cli

EPOCHS = 12  # enough for the missing rate and lengths


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("irregular")
    (folder / "irregular.yaml").write_text(IRREGULAR_CONFIG)
    real = irregular_cohort(patients=160, seed=0)
    real.to_csv(folder / "cohort.csv", index=False)
    result = run(
        "train", "--config", folder / "irregular.yaml", "--data", folder / "cohort.csv",
        "--epochs", EPOCHS, "--out", folder / "run", "--seed", 0, "--eval-repeats", 1,
        "--eval-max-epochs", 5,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    synthetic = folder / "synthetic.csv"
    result = run("sample", "--model", folder / "run", "--n", 1000, "--out", synthetic)
    assert result.exit_code == 0, result.output
    assert "1 to 16 steps (as in training)" in result.output
    return folder, real, pd.read_csv(synthetic)


def test_train_evaluated_lengths_and_missing_values(trained):
    folder, real, _ = trained
    metrics = json.loads((folder / "run" / "evaluation" / "metrics.json").read_text())
    fidelity = metrics["fidelity"]
    # Evaluated against half the cohort (the other half is the privacy holdout).
    lengths = real.groupby("PatientID").size()
    assert fidelity["lengths"]["real_mean"] == pytest.approx(lengths.mean(), abs=1.0)
    assert fidelity["lengths"]["ks"] < 0.15
    rates = fidelity["missing_rates"]["Lactate"]
    assert rates["real"] == pytest.approx(real["Lactate"].isna().mean(), abs=0.05)
    assert rates["synthetic"] == pytest.approx(rates["real"], abs=0.08)
    assert "Lactate_observed" in fidelity["marginals"] and "Day_gap" in fidelity["marginals"]
    assert (folder / "run" / "evaluation" / "report.html").exists()


def test_synthetic_lengths_follow_the_real_length_distribution(trained):
    _, real, synthetic = trained
    real_lengths = real.groupby("PatientID").size()
    synthetic_lengths = synthetic.groupby("PatientID").size()
    assert synthetic_lengths.min() >= 1 and synthetic_lengths.max() <= 16
    assert scipy.stats.ks_2samp(real_lengths, synthetic_lengths).pvalue > 0.01
    # And a shuffled-away distribution is told apart by the same test.
    assert scipy.stats.ks_2samp(real_lengths, np.full(1000, 12)).pvalue < 1e-6


def test_static_attributes_never_vary_within_a_patient(trained):
    _, _, synthetic = trained
    assert (synthetic.groupby("PatientID")[["Age", "Sex", "Site"]].nunique() == 1).all().all()


def test_missing_rate_is_reproduced_within_a_few_points(trained):
    _, real, synthetic = trained
    assert real["Lactate"].isna().mean() == pytest.approx(0.4, abs=0.03)
    assert synthetic["Lactate"].isna().mean() == pytest.approx(
        real["Lactate"].isna().mean(), abs=0.05
    )
    assert not synthetic[["Age", "HR", "Sex", "Site", "Vaso", "Day"]].isna().any().any()


def test_visit_times_are_increasing_integers(trained):
    _, _, synthetic = trained
    assert synthetic["Day"].dtype.kind == "i"
    assert (synthetic.groupby("PatientID")["Day"].diff().dropna() >= 0).all()
    assert synthetic.groupby("PatientID")["Day"].diff().dropna().mean() > 1


def test_where_yields_only_matching_patients(trained):
    folder, _, _ = trained
    out = folder / "women_north.csv"
    result = run(
        "sample", "--model", folder / "run", "--n", 50, "--out", out,
        "--where", "Sex=Female", "--where", "Site=North",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert frame["PatientID"].nunique() == 50
    assert (frame["Sex"] == 1).all() and (frame["Site"] == 1).all()
    result = run("sample", "--model", folder / "run", "--n", 5, "--where", "Site=West")
    assert result.exit_code == 2 and "'West' is not a level of Site" in result.output


def test_months_fixes_every_length(trained):
    folder, _, _ = trained
    out = folder / "six.csv"
    assert (
        run("sample", "--model", folder / "run", "--n", 7, "--months", 6, "--out", out).exit_code
        == 0
    )
    assert (pd.read_csv(out).groupby("PatientID").size() == 6).all()


def test_saved_model_draws_the_same_patients_as_sample(trained):
    from hg_keras.sampling import TrainedRun

    folder, _, _ = trained
    sampled = TrainedRun(folder / "run").sample_frame(6, seed=3)
    served = tf.saved_model.load(str(folder / "run" / "serving" / "hg_keras" / "1"))
    outputs = served.signatures["serving_default"](
        n=tf.constant(6), seq_len=tf.constant(16), seed=tf.constant(3)
    )
    lengths = outputs["length"].numpy()
    np.testing.assert_array_equal(lengths, sampled.groupby("PatientID").size())
    valid = np.arange(16)[None, :] < lengths[:, None]
    np.testing.assert_allclose(outputs["HR"].numpy()[valid], sampled["HR"], rtol=1e-5)
    np.testing.assert_array_equal(outputs["Day"].numpy()[valid], sampled["Day"])
    np.testing.assert_array_equal(
        np.isnan(outputs["Lactate"].numpy()[valid]), sampled["Lactate"].isna()
    )
    np.testing.assert_array_equal(outputs["Site"].numpy()[valid], sampled["Site"])


def test_where_on_an_unconditional_model_says_how_to_get_one(trained_run):
    result = run("sample", "--model", trained_run, "--n", 3, "--where", "Gender=Female")
    assert result.exit_code == 2
    assert "--where needs a conditional model" in result.output
    assert "model.conditional: true" in result.output


def test_unequal_lengths_under_a_fixed_schema_name_the_file_and_the_fix(tmp_path):
    (tmp_path / "fixed.yaml").write_text(
        IRREGULAR_CONFIG.replace("lengths: variable", "lengths: fixed")
    )
    irregular_cohort(patients=20).to_csv(tmp_path / "cohort.csv", index=False)
    result = run(
        "train", "--config", tmp_path / "fixed.yaml", "--data", tmp_path / "cohort.csv",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'cohort.csv'}: patients have 2 to 16 time steps" in result.output
    assert "set 'lengths: variable'" in result.output
    assert not (tmp_path / "run").exists()
