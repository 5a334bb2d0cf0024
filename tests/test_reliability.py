"""Interrupted and diverging training, unequal patients, and fuzzed input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import cli
from hg_keras.callbacks import (
    STATE,
    EpochCheckpoint,
    NonFiniteGuard,
    completed_epochs,
    restore_state,
    save_state,
)
from hg_keras.data import Schema, load_cohort
from hg_keras.errors import InputError, TrainingError

ROOT = Path(__file__).resolve().parents[1]


def start_training(config, out, epochs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [
        sys.executable,
        str(ROOT / "cli.py"),
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--no-evaluation",
        "--no-export",
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent
    )


def wait_for_epochs(process, checkpoint, epochs, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if completed_epochs(checkpoint) >= epochs:
            return
        if process.poll() is not None:
            pytest.fail(f"training ended early: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("training made no progress")


def test_sigterm_stops_cleanly_and_keeps_the_last_epoch(tmp_path, tiny_config_path):
    out = tmp_path / "run"
    process = start_training(tiny_config_path, out, epochs=500)
    wait_for_epochs(process, out / "checkpoint", 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "error: SIGTERM during epoch" in stderr and "continue with --resume" in stderr
    assert "Traceback" not in stderr
    done = completed_epochs(out / "checkpoint")
    assert done >= 2
    history = pd.read_csv(out / "logs" / "history.csv")
    assert list(history["epoch"]) == list(range(done))
    assert json.loads((out / "run.json").read_text())["epochs_completed"] == done


def train_in_process(*args):
    result = CliRunner().invoke(cli, ["train", *map(str, args), "--no-evaluation", "--no-export"])
    assert result.exit_code == 0, result.output
    return result.output


def assert_same_generator(run_a, run_b):
    for a, b in zip(
        keras.models.load_model(run_a / "generator.keras").get_weights(),
        keras.models.load_model(run_b / "generator.keras").get_weights(),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_resumed_runs_equal_an_uninterrupted_one(tmp_path, tiny_config_path):
    """Killed mid-run (kill -9) and resumed, then finished and extended: the same
    weights as one uninterrupted run."""
    epochs = 6
    straight = tmp_path / "straight"
    train_in_process("--config", tiny_config_path, "--out", straight, "--epochs", epochs)

    run = tmp_path / "killed"
    process = start_training(tiny_config_path, run, epochs=epochs)
    wait_for_epochs(process, run / "checkpoint", 2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    stopped_at = completed_epochs(run / "checkpoint")
    assert 2 <= stopped_at < epochs - 1
    output = train_in_process("--resume", "--out", run, "--epochs", epochs - 1)
    assert f"epochs {stopped_at + 1}..{epochs - 1}" in output
    assert json.loads((run / "run.json").read_text())["epochs_completed"] == epochs - 1

    output = train_in_process("--resume", "--out", run, "--epochs", epochs)
    assert f"epochs {epochs}..{epochs}" in output
    assert_same_generator(straight, run)
    history = pd.read_csv(run / "logs" / "history.csv")
    assert list(history["epoch"]) == list(range(epochs))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    x = np.ones((8, 2), "float32")
    y_good, y_bad = np.zeros((8, 1), "float32"), np.full((8, 1), np.nan, "float32")
    guard, checkpoint = NonFiniteGuard(), EpochCheckpoint(str(tmp_path / "ckpt"))
    model.fit(x, y_good, epochs=1, batch_size=4, callbacks=[guard, checkpoint], verbose=0)
    good = model.get_weights()
    model.fit(
        x, y_bad, epochs=3, initial_epoch=1, batch_size=4, callbacks=[guard, checkpoint], verbose=0
    )
    assert completed_epochs(tmp_path / "ckpt") == 1
    with pytest.raises(
        TrainingError, match=r"non-finite loss at epoch 2, step 1; training stopped"
    ):
        guard.raise_if_failed(tmp_path / "ckpt")
    restored = keras.models.clone_model(model)
    restored.compile("sgd", "mse")
    restored.optimizer.build(restored.trainable_variables)
    restore_state(restored, tmp_path / "ckpt" / STATE)
    for a, b in zip(good, restored.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(restored.optimizer.iterations.numpy()) == 2  # two batches of the good epoch


def _small_model(width, optimizer="adam"):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(width)(keras.layers.Dense(4)(inputs)))
    model.compile(optimizer, "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_saved_state_restores_weights_and_optimizer_slots_and_refuses_another_model(tmp_path):
    keras.utils.set_random_seed(0)
    trained = _small_model(2)
    trained.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=2, batch_size=4, verbose=0)
    save_state(trained, tmp_path / STATE)
    fresh = _small_model(2)
    restore_state(fresh, tmp_path / STATE)
    for a, b in zip(trained.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for a, b in zip(trained.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == 4
    with pytest.raises(TrainingError, match=r"latest\.state\.npz: the checkpoint holds .* another"):
        restore_state(_small_model(5), tmp_path / STATE)
    with pytest.raises(TrainingError, match=r"old\.npz: missing; checkpoint\.json names an epoch"):
        restore_state(fresh, tmp_path / "old.npz")


def test_diverging_training_is_one_line(tmp_path, tiny_config_path):
    config = tmp_path / "diverge.yaml"
    config.write_text(f"extends: {tiny_config_path}\ntraining:\n  gradient_penalty_weight: .inf\n")
    result = CliRunner().invoke(
        cli, ["train", "--config", str(config), "--out", str(tmp_path / "r"), "--no-evaluation"]
    )
    assert result.exit_code == 2
    assert "non-finite critic_loss" in result.output and "at epoch 1, step 1" in result.output
    assert not (tmp_path / "r" / "generator.keras").exists()


@pytest.mark.parametrize(
    "keep, message",
    [
        (
            lambda f: ~((f.PatientID == 3) & (f.Timestep >= 12)),
            "cohort.csv: patients have 12 to 60 time steps but the schema says lengths: fixed",
        ),
        (lambda f: f.Timestep < 4, "patients have 4 time steps but the curriculum needs 6"),
    ],
    ids=["unequal", "shorter-than-curriculum"],
)
def test_cohorts_the_curriculum_cannot_use_are_refused(tmp_path, tiny_config_path, keep, message):
    frame = load_cohort(patients=16)
    path = tmp_path / "cohort.csv"
    frame[keep(frame)].to_csv(path, index=False)
    arguments = [
        "train",
        "--config",
        str(tiny_config_path),
        "--data",
        str(path),
        "--holdout",
        "0",
        "--out",
        str(tmp_path / "r"),
    ]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "r").exists()


SCHEMA = Schema.from_dict(
    {
        "id": "id",
        "time": "t",
        "variables": [
            {"name": "x", "kind": "numeric"},
            {"name": "k", "kind": "categorical", "levels": {0: "a", 1: "b", 2: "c"}},
        ],
    }
)
cells = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.just(""),
)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(st.sampled_from(["id", "t", "x", "k", "extra", ""]), min_size=0, max_size=5),
    rows=st.lists(st.lists(cells, min_size=0, max_size=5), max_size=6),
    raw=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_fuzzed_csv_gives_a_clean_error_or_a_valid_cohort(tmp_path_factory, header, rows, raw):
    path = tmp_path_factory.mktemp("fuzz") / "cohort.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        lines = [",".join(header)] + [",".join(str(c).replace("\n", " ") for c in r) for r in rows]
        path.write_text("\n".join(lines))
    try:
        frame = load_cohort(path, SCHEMA)
    except InputError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    assert list(frame.columns) == ["x", "k", "id", "t"]
    assert frame["k"].isin([0, 1, 2]).all() and (frame["x"] > -1e-3).all()
    assert not frame.duplicated(["id", "t"]).any()


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=6)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "time",
                    "variables",
                    "name",
                    "kind",
                    "levels",
                    "static",
                    "transform",
                    "missing",
                    "numeric",
                    "binary",
                    "x",
                ]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=250, deadline=None)
@given(data=yaml_values)
def test_fuzzed_schema_gives_a_clean_error_or_a_schema(data):
    try:
        schema = Schema.from_dict(data)
    except InputError as error:
        assert "\n" not in str(error)
        return
    assert Schema.from_dict(schema.to_dict()) == schema
