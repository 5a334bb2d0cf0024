import json

import keras
import numpy as np
import pandas as pd
from click.testing import CliRunner

from cli import cli


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def test_train_one_tiny_epoch_writes_a_loadable_run(tmp_path, tiny_config_path):
    out = tmp_path / "run"
    result = run("train", "--config", tiny_config_path, "--out", out, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert f"python cli.py sample --model {out}" in result.output
    for name in (
        "config.yaml",
        "run.json",
        "transforms.json",
        "generator.keras",
        "checkpoint/latest.weights.h5",
        "logs/history.csv",
    ):
        assert (out / name).exists(), name
    generator = keras.models.load_model(out / "generator.keras")
    assert (
        generator.count_params() == 2 * (4 * 32 + 32 + 8 * 32 + 32) + 16 * 8 + 8 + 72 + 8 * 37 + 37
    )
    history = pd.read_csv(out / "logs" / "history.csv")
    assert len(history) == 1 and np.isfinite(history["critic_loss"]).all()
    assert json.loads((out / "run.json").read_text())["epochs_completed"] == 1
    assert (tmp_path / "latest").resolve() == out.resolve()


def test_resume_continues_exactly_where_it_stopped(tmp_path, tiny_config_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert (
        run("train", "--config", tiny_config_path, "--out", straight, "--epochs", 2).exit_code == 0
    )
    assert (
        run("train", "--config", tiny_config_path, "--out", interrupted, "--epochs", 1).exit_code
        == 0
    )
    result = run("train", "--resume", "--out", interrupted, "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert "epochs 2..2" in result.output
    history = pd.read_csv(interrupted / "logs" / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    expected = keras.models.load_model(straight / "generator.keras").get_weights()
    resumed = keras.models.load_model(interrupted / "generator.keras").get_weights()
    for a, b in zip(expected, resumed):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_existing_run_needs_resume(tmp_path, tiny_config_path):
    out = tmp_path / "run"
    assert run("train", "--config", tiny_config_path, "--out", out).exit_code == 0
    result = run("train", "--config", tiny_config_path, "--out", out)
    assert result.exit_code == 2
    assert "already holds a run; pass --resume" in result.output


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
