"""Error paths not covered elsewhere: each gives one line naming what is wrong."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from hg_keras.config import builtin_config_path, load_config
from hg_keras.data import load_cohort
from hg_keras.errors import InputError
from hg_keras.evaluation import evaluate


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize(
    "override, message",
    [
        ("training:\n  batch_size: 0\n", "training.batch_size must be positive, got 0"),
        ("training:\n  curriculum: [20, 10]\n", "training.curriculum must be strictly increasing"),
        (
            "model:\n  latent_distribution: gamma\n",
            "model.latent_distribution must be uniform or normal, got 'gamma'",
        ),
        ("training:\n  epochs: many\n", "training: epochs must be an integer, got 'many'"),
        ("model:\n  numeric_margin: -0.1\n", "model.numeric_margin must be zero or positive"),
        (
            "training:\n  alignment: {marginal: -1}\n",
            "training: alignment: marginal must be a number, zero or positive, got '-1'",
        ),
        (
            "training:\n  alignment: {summary: 30}\n",
            "training: alignment: unknown term 'summary'; expected one of correlation",
        ),
        (
            "training:\n  epochs: 3\n  updates: 9\n",
            "training.updates and training.epochs are both set",
        ),
        (
            "training:\n  epochs: null\n",
            "training needs one budget: updates, epochs or minutes",
        ),
        (
            "model:\n  carry_forward: always\n",
            "model.carry_forward must be declared or detect, got 'always'",
        ),
        (
            "training:\n  validation: 1.5\n",
            "training.validation must be a fraction below 1 or a whole count, got 1.5",
        ),
        ("training:\n  checks: 0\n", "training.checks must be positive, got 0"),
        ("model:\n  slow_noise_dim: 200\n", "slow_noise_dim .* cannot exceed model.latent_dim"),
        ("model:\n  slow_noise_memory: 1.0\n", "model.slow_noise_memory must be below 1, got 1.0"),
        ("model:\n  slow_noise_memory: -0.5\n", "model.slow_noise_memory must be zero or positive"),
    ],
)
def test_bad_config_values(tmp_path, override, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"extends: {builtin_config_path('art4hiv')}\n{override}")
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(path)


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "configs").glob("*.yaml"))
    + sorted((ROOT / "benchmarks/candidates").glob("*.yaml")),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_every_shipped_config_and_benchmark_candidate_loads(path):
    config = load_config(path)
    training = config.training
    budgets = [b for b in (training.updates, training.epochs, training.minutes) if b is not None]
    assert budgets and min(budgets) > 0 and config.schema.variables


def test_extends_loop(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(InputError, match="'extends' loops back to itself"):
        load_config(tmp_path / "a.yaml")


def test_data_path_that_is_a_folder(tmp_path, art_schema):
    (tmp_path / "cohort.csv").mkdir()
    with pytest.raises(InputError, match="is a folder, expected a .csv or .parquet file"):
        load_cohort(tmp_path / "cohort.csv", art_schema)


def test_a_cohort_smaller_than_training_patients_trains_on_what_it_has(tmp_path, tiny_config_path):
    """training.patients (16 here) is a cap, not a demand."""
    path = tmp_path / "cohort.csv"
    load_cohort(patients=10).to_csv(path, index=False)
    result = run(
        "train",
        "--config",
        tiny_config_path,
        "--data",
        path,
        "--no-evaluation",
        "--no-export",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "run.json").read_text())["patients"] == 8


def test_resume_takes_no_new_settings(tmp_path):
    result = run("train", "--resume", "--out", tmp_path, "--seed", 3)
    assert result.exit_code == 2
    assert "--resume continues a run as configured" in result.output


def test_negative_max_copies(trained_run, tmp_path):
    result = run(
        "sample", "--model", trained_run, "--n", 2, "--max-copies", -1, "--out", tmp_path / "s.csv"
    )
    assert result.exit_code == 2
    assert "--max-copies must be 0 or more, got -1" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_copy_check_needs_the_training_cohort(trained_run, tmp_path):
    """A run trained on a file that has since gone: counting is skipped, refusing is an error."""
    import shutil

    moved = tmp_path / "run"
    shutil.copytree(trained_run, moved)
    info = json.loads((moved / "run.json").read_text())
    (moved / "run.json").write_text(json.dumps({**info, "data": str(tmp_path / "gone.csv")}))
    result = run("sample", "--model", moved, "--n", 2, "--out", tmp_path / "a.csv")
    assert result.exit_code == 0
    assert "not checked (training cohort not found)" in result.output
    result = run(
        "sample", "--model", moved, "--n", 2, "--max-copies", 0, "--out", tmp_path / "b.csv"
    )
    assert result.exit_code == 2
    assert "cannot check copies" in result.output and not (tmp_path / "b.csv").exists()


def test_evaluate_needs_enough_patients(art_schema):
    frame = load_cohort(patients=3)
    with pytest.raises(InputError, match="at least 4 training and 2 holdout patients"):
        evaluate(frame, frame, art_schema)
