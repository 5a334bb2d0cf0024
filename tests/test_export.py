import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from hg_keras.export import export_run, output_name
from hg_keras.sampling import TrainedRun

LOAD_WITH_TENSORFLOW_ONLY = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    result = {"signatures": sorted(model.signatures)}
    for n in (2, 5):
        out = model.signatures["serving_default"](n=tf.constant(n), seq_len=tf.constant(3),
                                                  seed=tf.constant(11))
        result[f"n{n}"] = {k: v.numpy().tolist() for k, v in out.items()}
    noise = tf.constant(np.load(sys.argv[2]))
    decoded = model.signatures["sample_from_noise"](noise=noise)
    result["noise"] = {k: v.numpy().tolist() for k, v in decoded.items()}
    result["encoded_shape"] = list(model.signatures["sample_encoded"](noise=noise)["encoded"].shape)
    # `import tensorflow` itself imports keras; what matters is no hg_keras code.
    result["modules"] = sorted(m for m in sys.modules if m.startswith("hg_keras"))
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    return export_run(trained_run, out=tmp_path_factory.mktemp("serving") / "hg_keras")


def test_versioned_layout(exported, trained_run):
    assert exported.name == "1" and (exported / "saved_model.pb").exists()
    second = export_run(trained_run, out=exported.parent)
    assert second.name == "2"
    assert sorted(p.name for p in exported.parent.iterdir()) == ["1", "2"]


def test_loads_and_decodes_in_a_tensorflow_only_process(exported, trained_run, tmp_path):
    run = TrainedRun(trained_run)
    noise = np.random.default_rng(0).random((2, 4, run.generator.latent_dim)).astype("float32")
    np.save(tmp_path / "noise.npy", noise)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITH_TENSORFLOW_ONLY,
            str(exported),
            str(tmp_path / "noise.npy"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tmp_path,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    assert {"serving_default", "sample_from_noise", "sample_encoded"} <= set(result["signatures"])
    names = [output_name(v.name) for v in run.schema.variables]
    assert sorted(result["n2"]) == sorted(names)
    assert np.asarray(result["n5"]["VL"]).shape == (5, 3)
    assert result["encoded_shape"] == [2, 4, run.transformer.layout.width]

    # serving_default equals what `sample` writes for the same seed.
    frame = run.sample_frame(5, 3, seed=11)
    for variable in run.schema.variables:
        served = np.asarray(result["n5"][output_name(variable.name)]).ravel()
        if variable.is_numeric:
            np.testing.assert_allclose(served, frame[variable.name], rtol=1e-9)
        else:
            np.testing.assert_array_equal(served, frame[variable.name])

    # sample_from_noise equals the Python decode of the same noise, except
    # that a carried value under its set flag repeats the previous month's.
    decoded = run.transformer.decode(np.asarray(run.generator(noise)))
    carried = {v.name: v.carried_when[0] for v in run.schema.variables if v.carried_when}
    for variable in run.schema.variables:
        served = np.asarray(result["noise"][output_name(variable.name)])
        expected = np.asarray(decoded[variable.name]).reshape(served.shape).copy()
        if variable.name in carried:
            flags = np.asarray(result["noise"][output_name(carried[variable.name])])
            for t in range(1, served.shape[1]):
                expected[:, t] = np.where(flags[:, t] == 1, expected[:, t - 1], expected[:, t])
        np.testing.assert_allclose(served, expected, rtol=1e-9)


def test_saved_model_cli_lists_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", str(exported), "--all"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("serving_default", "sample_from_noise", "sample_encoded"):
        assert f"signature_def['{name}']" in shown
    assert "inputs['seq_len']" in shown and "outputs['Rel_CD4']" in shown


def test_no_op_is_pinned_to_a_device(exported):
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((exported / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    # Checkpoint save/restore functions run on the host by design; check the sampling ones.
    functions = [
        f
        for f in graph.library.function
        if "traced_save" not in f.signature.name and "traced_restore" not in f.signature.name
    ]
    names = " ".join(f.signature.name for f in functions)
    assert "serving_default" in names and "while_body" in names
    pinned = [
        (f.signature.name, n.name, n.device) for f in functions for n in f.node_def if n.device
    ]
    assert pinned == []


def test_output_names_are_signature_safe():
    assert output_name("Comp. INI") == "Comp_INI"
    assert output_name("VL (M)") == "VL_M"
    assert output_name("Extra pk-En") == "Extra_pk_En"


def test_export_cli(trained_run, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    result = CliRunner().invoke(
        cli, ["export", "--model", str(trained_run), "--out", str(tmp_path / "m"), "--version", "3"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "3" / "saved_model.pb").exists()
    again = CliRunner().invoke(
        cli, ["export", "--model", str(trained_run), "--out", str(tmp_path / "m"), "--version", "3"]
    )
    assert again.exit_code == 2 and "already exists" in again.output
    assert tf.saved_model.contains_saved_model(str(tmp_path / "m" / "3"))


def test_serving_generates_in_chunks_like_sample(trained_run, tmp_path):
    import pandas as pd

    from hg_keras.sampling import sample_to_file

    path = export_run(trained_run, out=tmp_path / "m", chunk_patients=2)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        n=tf.constant(5), seq_len=tf.constant(3), seed=tf.constant(4)
    )
    out, _ = sample_to_file(
        TrainedRun(trained_run),
        5,
        tmp_path / "s.csv",
        months=3,
        seed=4,
        chunk_patients=2,
        verbose=False,
    )
    frame = pd.read_csv(out)
    assert served["VL"].shape == (5, 3)
    np.testing.assert_allclose(served["VL"].numpy().ravel(), frame["VL"], rtol=1e-9)
    np.testing.assert_array_equal(served["Extra_PI"].numpy().ravel(), frame["Extra PI"])
