import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli import cli
from hg_keras import sampling
from hg_keras.data import load_cohort
from hg_keras.data.fingerprints import patient_fingerprints
from hg_keras.errors import InputError
from hg_keras.sampling import TrainedRun, sample_to_file


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_sample_cli_writes_a_cohort_that_reloads_with_the_schema(trained_run, tmp_path):
    out = tmp_path / "synthetic.csv"
    result = run("sample", "--model", trained_run, "--n", 7, "--months", 4, "--out", out)
    assert result.exit_code == 0, result.output
    assert "wrote 7 synthetic patients x 4 steps" in result.output
    schema = TrainedRun(trained_run).schema
    frame = load_cohort(out, schema)
    assert list(frame.columns) == list(schema.columns)
    assert frame.groupby("PatientID").size().tolist() == [4] * 7
    assert (frame.groupby("PatientID")[["Gender", "Ethnic"]].nunique() == 1).all().all()
    assert (frame[["VL", "CD4", "Rel CD4"]] > -1e-3).all().all()


def test_carried_values_repeat_exactly_under_their_flags(trained_run):
    """The run's schema carries VL, CD4 and Rel CD4 under VL (M) / CD4 (M) (conftest)."""
    frame = TrainedRun(trained_run).sample_frame(1000, 6, seed=1)
    months = {name: frame[name].to_numpy().reshape(1000, 6) for name in frame.columns}
    for name, flag in [("VL", "VL (M)"), ("CD4", "CD4 (M)"), ("Rel CD4", "CD4 (M)")]:
        flagged = months[flag][:, 1:] == 1
        assert flagged.any(), f"no month of {flag} was drawn set; the test would prove nothing"
        repeated = months[name][:, 1:] == months[name][:, :-1]
        assert repeated[flagged].all()
        assert repeated[~flagged].mean() < 0.05  # measured months are the generator's own


def test_same_seed_same_file_other_seed_other_file(trained_run, tmp_path):
    paths = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        paths.append(tmp_path / f"{name}.csv")
        assert (
            run(
                "sample", "--model", trained_run, "--n", 3, "--seed", seed, "--out", paths[-1]
            ).exit_code
            == 0
        )
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_default_months_and_parquet(trained_run, tmp_path):
    out = tmp_path / "s.parquet"
    assert run("sample", "--model", trained_run, "--n", 2, "--out", out).exit_code == 0
    frame = pd.read_parquet(out)
    assert frame.groupby("PatientID").size().tolist() == [6, 6]  # tiny config trains up to 6


def test_chunks_stream_in_order(trained_run, tmp_path):
    run_ = TrainedRun(trained_run)
    out, copies = sample_to_file(
        run_, 5, tmp_path / "s.csv", months=3, seed=4, chunk_patients=2, verbose=False
    )
    assert copies == 0
    frame = pd.read_csv(out)
    assert frame["PatientID"].tolist() == np.repeat(np.arange(5), 3).tolist()
    second_chunk = run_.sample_frame(2, 3, seed=4, chunk=1, first_id=2)
    pd.testing.assert_frame_equal(
        frame.iloc[6:12].reset_index(drop=True), second_chunk, check_dtype=False
    )


def test_failed_write_keeps_previous_file(trained_run, tmp_path, monkeypatch):
    run_ = TrainedRun(trained_run)
    out = tmp_path / "s.csv"
    out.write_text("previous release\n")
    real_write = sampling._write_chunk
    calls = []

    def failing(frame, path, suffix, writer, first):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(frame, path, suffix, writer, first)

    monkeypatch.setattr(sampling, "_write_chunk", failing)
    with pytest.raises(OSError, match="No space left"):
        sample_to_file(run_, 4, out, months=2, chunk_patients=2, verbose=False)
    assert out.read_text() == "previous release\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--n", 0), "--n must be a positive number of patients, got 0"),
        (("--n", 2, "--out", "x.txt"), "unsupported output type '.txt'"),
        (("--n", 2, "--months", 0), "--months must be positive, got 0"),
    ],
)
def test_bad_sample_arguments(trained_run, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run("sample", "--model", trained_run, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_model_folder_that_is_not_a_run(tmp_path):
    result = run("sample", "--model", tmp_path, "--n", 2)
    assert result.exit_code == 2
    assert "not a trained run (missing generator.keras" in result.output
    result = run("sample", "--model", tmp_path / "nope", "--n", 2)
    assert "no such model folder" in result.output
    with pytest.raises(InputError):
        TrainedRun(tmp_path)


def test_copies_of_training_patients_are_counted_and_refused(trained_run, tmp_path, monkeypatch):
    """A generator that memorised its training set must not be released with --max-copies 0."""
    run_ = TrainedRun(trained_run)
    memorised = set(patient_fingerprints(run_.encoded(3, 4, seed=5), run_.transformer.layout))
    monkeypatch.setattr(TrainedRun, "training_fingerprints", lambda self, months: memorised)
    out = tmp_path / "s.csv"
    _, copies = sample_to_file(run_, 3, out, months=4, seed=5, verbose=False)
    assert copies == 3
    out.unlink()
    with pytest.raises(InputError, match="3 synthetic patients exactly copy a training patient"):
        sample_to_file(run_, 3, out, months=4, seed=5, verbose=False, max_copies=2)
    assert list(tmp_path.iterdir()) == []
    result = run(
        "sample",
        "--model",
        trained_run,
        "--n",
        3,
        "--months",
        4,
        "--seed",
        5,
        "--max-copies",
        0,
        "--out",
        out,
    )
    assert result.exit_code == 2 and "(--max-copies 0); nothing was written" in result.output
    assert not out.exists()


def test_sample_reports_copies(trained_run, tmp_path):
    result = run("sample", "--model", trained_run, "--n", 3, "--out", tmp_path / "s.csv")
    assert "exact copies of training patients: 0" in result.output


def test_fingerprints_match_only_identical_records(art_schema):
    from hg_keras.data import CohortTransformer

    frame = load_cohort(patients=4)
    transformer = CohortTransformer(art_schema).fit(frame)
    encoded = transformer.encode(frame)
    keys = patient_fingerprints(encoded, transformer.layout)
    assert len(set(keys)) == 4
    soft = encoded.copy()
    soft[..., 3:] = soft[..., 3:] * 0.9 + 0.01  # same argmax: still the same record
    assert patient_fingerprints(soft, transformer.layout) == keys
    moved = encoded.copy()
    moved[0, 5, 0] += 1e-4
    assert patient_fingerprints(moved, transformer.layout)[0] != keys[0]


def test_disk_full_is_one_line_and_keeps_previous_file(trained_run, tmp_path, monkeypatch):
    out = tmp_path / "s.csv"
    out.write_text("previous\n")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out))

    monkeypatch.setattr(sampling, "_write_chunk", full)
    result = run("sample", "--model", trained_run, "--n", 2, "--out", out)
    assert result.exit_code == 2
    assert result.output.strip().endswith(f"error: {out}: No space left on device")
    assert out.read_text() == "previous\n"


def test_sample_in_a_fresh_process(trained_run, tmp_path):
    """Loading a saved generator must not depend on classes imported by training."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "fresh.csv"
    completed = subprocess.run(
        [
            sys.executable,
            str(root / "cli.py"),
            "sample",
            "--model",
            str(trained_run),
            "--n",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert len(pd.read_csv(out)) == 2 * 6


def test_group_and_length_draws_are_systematic_samples():
    """Counts are count * p rounded up or down; each draw still has probability p."""
    import tensorflow as tf

    from hg_keras.noise import draw_categories

    p = np.array([0.0029, 0.05, 0.2, 0.7471])
    totals = np.zeros(4)
    for seed in range(200):
        picks = draw_categories(p, 1000, tf.constant([seed, 9], tf.int64)).numpy()
        counts = np.bincount(picks, minlength=4)
        assert (np.abs(counts - 1000 * p) < 1).all(), counts
        totals += counts
        # Shuffled, not grouped in index order.
        assert (np.diff(picks) < 0).any()
    # Unbiased: over seeds the 2.9-patient group comes 2 or 3 times, 2.9 on average.
    np.testing.assert_allclose(totals / 200, 1000 * p, atol=0.1)
    again = draw_categories(p, 1000, tf.constant([7, 9], tf.int64)).numpy()
    np.testing.assert_array_equal(again, draw_categories(p, 1000, tf.constant([7, 9], tf.int64)))
