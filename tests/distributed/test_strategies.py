"""tf.distribute on CPU: 2 logical devices, 2 worker processes on loopback.

Each case runs in fresh processes: the CPU split and the cluster must be set
before TensorFlow starts, and this test process has started it already.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from hg_keras.distribute import describe, is_chief, make_strategy
from hg_keras.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300


def _python(args, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _finish(process):
    output, _ = process.communicate(timeout=TIMEOUT)
    return process.returncode, output


def _train(*args, env=None):
    return _finish(_python(["cli.py", "train", "--no-evaluation", "--no-export", *args], env=env))


def test_mirrored_on_two_cpus_trains_as_one_device(tmp_path, tiny_config_path):
    # v1's model: its one alignment term is all-reduced; the default's other terms
    # follow each replica's slice, so N replicas are not one device for them.
    out = tmp_path / "result.json"
    code, output = _finish(
        _python([Path(__file__).with_name("equivalence.py"), tiny_config_path, out])
    )
    assert code == 0, output
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    single, mirrored = result["single"], result["mirrored"]
    assert len(single) == len(mirrored) == 4  # 2 lengths x 2 batches of 8
    for one, two in zip(single, mirrored):
        assert one.keys() == two.keys()
        for name in one:
            # Only the summation order differs (measured: < 1e-6 relative).
            assert two[name] == pytest.approx(one[name], rel=1e-4, abs=1e-5), name
    assert result["max_weight_difference"] < 1e-5 * result["max_weight"]


def test_cli_mirrored_run_resumes_on_one_device(tmp_path, tiny_default_config_path):
    # One curriculum length: each length is traced once per process, replicated or not.
    config = tmp_path / "one-length.yaml"
    config.write_text(f"extends: {tiny_default_config_path}\ntraining:\n  curriculum: [6]\n")
    out = tmp_path / "run"
    code, output = _train(
        "--config", config, "--strategy", "mirrored", "--cpu-replicas", 2,
        "--epochs", 1, "--patients", 16, "--out", out,
    )  # fmt: skip
    assert code == 0, output
    assert "strategy mirrored, 2 replica(s) in sync" in output
    assert "4 patients per replica per batch" in output

    code, output = _train("--resume", "--out", out, "--epochs", 2)
    assert code == 0, output
    assert "strategy default, 1 replica(s) in sync" in output
    assert json.loads((out / "run.json").read_text())["epochs_completed"] == 2
    history = pd.read_csv(out / "logs" / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert np.isfinite(history["critic_loss"]).all()


def test_batch_that_does_not_split_over_replicas_is_refused(tmp_path, tiny_config_path):
    code, output = _train(
        "--config", tiny_config_path, "--strategy", "mirrored", "--cpu-replicas", 3,
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 2, output
    assert "error: batch size 8 does not split over 3 replicas" in output
    assert not (tmp_path / "run").exists()


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_loopback_train_and_the_chief_writes_once(tmp_path, tiny_config_path):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    out = tmp_path / "run"
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        args = ["cli.py", "train", "--no-evaluation", "--no-export"]
        args += ["--config", tiny_config_path]
        args += ["--strategy", "multiworker", "--out", out]
        processes.append(_python(args, env={"TF_CONFIG": json.dumps(tf_config)}))
    (chief_code, chief), (worker_code, worker) = [_finish(p) for p in processes]
    assert chief_code == 0, chief
    assert worker_code == 0, worker
    for output in (chief, worker):
        assert "strategy multiworker, 2 replica(s) in sync" in output
    assert "trained generator:" in chief
    assert "worker done" in worker and "trained generator:" not in worker
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "checkpoint.json",
        "latest.state.npz",
    ]
    assert json.loads((out / "checkpoint" / "checkpoint.json").read_text())["epoch"] == 1
    assert len(pd.read_csv(out / "logs" / "history.csv")) == 1


def test_default_strategy_is_the_chief_and_says_so():
    strategy = make_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert is_chief(strategy)
    assert describe(strategy) == "strategy default, 1 replica(s) in sync"


@pytest.mark.parametrize(
    "name, replicas, tf_config, message",
    [
        ("ring", None, None, "unknown strategy 'ring'; expected one of default, mirrored"),
        ("default", 2, None, "--cpu-replicas splits the CPU for --strategy mirrored only"),
        ("multiworker", None, None, "--strategy multiworker needs TF_CONFIG"),
        ("multiworker", None, '{"cluster": {}}', "TF_CONFIG: expected JSON"),
        ("multiworker", None, "not json", "TF_CONFIG: expected JSON"),
    ],
)
def test_bad_strategy_requests_are_input_errors(monkeypatch, name, replicas, tf_config, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        make_strategy(name, replicas)


def test_splitting_the_cpu_after_tensorflow_started_is_an_input_error():
    tf.constant(1.0)  # TensorFlow has started in this process.
    with pytest.raises(InputError, match="TensorFlow has already started"):
        make_strategy("mirrored", cpu_replicas=5)
