import json

import keras
import numpy as np
import pandas as pd
from click.testing import CliRunner

from cli import cli
from hg_keras.config import load_config
from hg_keras.training import planned_epochs


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def test_train_one_tiny_epoch_writes_a_loadable_run(tmp_path, tiny_config_path):
    out = tmp_path / "run"
    # A budget of minutes alone replaces the config's epochs and stops at the first
    # epoch end past it.
    result = run(
        "train", "--config", tiny_config_path, "--out", out, "--seed", 3, "--eval-repeats", 1,
        "--eval-max-epochs", 3, "--minutes", 0.001,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"python cli.py sample --model {out}" in result.output
    assert "scores: discriminative" in result.output and "floor in brackets" in result.output
    for name in (
        "config.yaml",
        "run.json",
        "transforms.json",
        "generator.keras",
        "checkpoint/latest.state.npz",
        "logs/history.csv",
        "serving/hg_keras/1/saved_model.pb",
    ):
        assert (out / name).exists(), name
    generator = keras.models.load_model(out / "generator.keras")
    assert (
        generator.count_params() == 2 * (4 * 32 + 32 + 8 * 32 + 32) + 16 * 8 + 8 + 72 + 8 * 37 + 37
    )
    history = pd.read_csv(out / "logs" / "history.csv")
    assert len(history) == 1 and np.isfinite(history["critic_loss"]).all()
    assert json.loads((out / "run.json").read_text())["epochs_completed"] == 1
    saved = load_config(out / "config.yaml").training
    assert (saved.minutes, saved.epochs, saved.updates) == (0.001, None, None)
    assert (tmp_path / "latest").resolve() == out.resolve()
    # The embedded cohort holds out the patients after the 16 trained on, and
    # the run's evaluation compares with exactly those.
    held = json.loads((out / "holdout.json").read_text())["ids"]
    assert held == list(range(16, 32))
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["setup"]["holdout_patients"] == 16
    assert metrics["setup"]["reference"] == "holdout"
    assert metrics["privacy"]["holdout_split_from_real"] is False
    assert metrics["setup"]["classifier_seeds"] == [0]


def test_existing_run_needs_resume(tmp_path, tiny_config_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"data": null, "patients": 16, "epochs_completed": 1}')
    result = run("train", "--config", tiny_config_path, "--out", out)
    assert result.exit_code == 2
    assert "already holds a run; pass --resume" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]  # nothing written


def test_resume_without_run_is_an_error(tmp_path):
    result = run("train", "--resume", "--out", tmp_path / "nothing")
    assert result.exit_code == 2
    assert "not a training run (no run.json)" in result.output


def test_bad_data_path_is_one_line(tmp_path, tiny_config_path):
    result = run("train", "--config", tiny_config_path, "--data", tmp_path / "missing.csv")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'missing.csv'}: no such file"
    assert not (tmp_path / "missing.csv").exists()


def test_wrong_column_in_data_names_it(tmp_path, tiny_config_path):
    from hg_keras.data import load_cohort

    path = tmp_path / "cohort.csv"
    load_cohort(patients=16).rename(columns={"CD4": "CD4 count"}).to_csv(path, index=False)
    result = run("train", "--config", tiny_config_path, "--data", path, "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "missing column(s) 'CD4'" in result.output
    assert not (tmp_path / "r").exists()


def test_a_users_cohort_holds_out_patients_by_group_and_evaluates_on_them(
    tmp_path, tiny_config_path
):
    from hg_keras.data import load_cohort
    from hg_keras.run_evaluation import evaluate_run

    cohort = load_cohort(patients=40)
    data = tmp_path / "cohort.csv"
    cohort.to_csv(data, index=False)
    out = tmp_path / "run"
    result = run(
        "train",
        "--config",
        tiny_config_path,
        "--data",
        data,
        "--patients",
        30,
        "--holdout",
        0.25,
        "--out",
        out,
        "--no-evaluation",
        "--no-export",
    )
    assert result.exit_code == 0, result.output
    assert not (out / "serving").exists()
    assert f"not written; python cli.py export --model {out}" in result.output
    held = json.loads((out / "holdout.json").read_text())["ids"]
    assert len(held) == 10
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["patients"] == 30
    trained = set(range(40)) - set(held)
    assert not trained & set(held)
    # Drawn within Gender: the female share of the holdout follows the cohort's.
    female = set(cohort.loc[cohort.Gender == 2, "PatientID"])
    assert abs(len(female & set(held)) / 10 - len(female) / 40) <= 0.1
    metrics, _ = evaluate_run(out, repeats=1, max_epochs=1)
    assert metrics["setup"]["holdout_patients"] == 10
    assert metrics["setup"]["real_patients"] == 30


def test_holdout_zero_says_privacy_was_not_tested(tmp_path, tiny_config_path):
    from hg_keras.data import load_cohort

    data = tmp_path / "cohort.csv"
    load_cohort(patients=24).to_csv(data, index=False)
    out = tmp_path / "run"
    result = run(
        "train", "--config", tiny_config_path, "--data", data, "--holdout", 0, "--out", out,
        "--eval-repeats", 1, "--eval-max-epochs", 3, "--no-export",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "holdout.json").read_text())["ids"] == []
    assert "privacy: not tested: the run trained on every patient" in result.output


def test_a_budget_of_updates_is_whole_epochs_rounded_up(tiny_config_path, tmp_path):
    config = load_config(tiny_config_path)  # 16 patients, batch 8, curriculum 3 and 6
    assert planned_epochs(config.training, 16) == 1  # epochs: 1
    assert planned_epochs(config.replace_training(updates=100).training, 16) == 25
    assert planned_epochs(config.replace_training(updates=101).training, 16) == 26
    assert planned_epochs(config.replace_training(minutes=5).training, 16) > 10**5
    # A file that names its budget does not inherit its base's.
    path = tmp_path / "longer.yaml"
    path.write_text(f"extends: {tiny_config_path}\ntraining:\n  updates: 40\n")
    training = load_config(path).training
    assert (training.updates, training.epochs) == (40, None)
