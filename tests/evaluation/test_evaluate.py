import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from hg_keras.data import load_cohort
from hg_keras.evaluation import evaluate

MONTHS = 12


@pytest.fixture(scope="module")
def cohort():
    frame = load_cohort(patients=600)
    return frame[frame.Timestep < MONTHS].reset_index(drop=True)


def halves(cohort):
    return (
        cohort[cohort.PatientID < 200],
        cohort[cohort.PatientID.between(200, 399)],
        cohort[cohort.PatientID >= 400],
    )


def shuffled_columns(frame, seed=0):
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for column in frame.columns[:-2]:
        out[column] = rng.permutation(frame[column].to_numpy())
    return out


@pytest.fixture(scope="module")
def scores(cohort, art_schema):
    train, unseen, holdout = halves(cohort)
    results = {}
    for name, synthetic in (
        ("disjoint", unseen),
        ("shuffled", shuffled_columns(unseen)),
        ("copies", train),
    ):
        results[name] = evaluate(train, synthetic, art_schema, holdout=holdout, seed=0, epochs=8)[0]
    return results


def test_disjoint_halves_of_the_same_cohort_look_ideal(scores):
    m = scores["disjoint"]
    assert m["utility"]["discriminative_score"] < 0.15
    assert m["fidelity"]["correlation_mae"] < 0.08  # sampling noise of 200 x 12 months
    assert m["fidelity"]["trend_correlation_mae"] < 0.1
    assert m["fidelity"]["ks_mean"] < 0.1
    assert m["fidelity"]["mode_coverage"] >= 0.75
    assert 0.8 < m["privacy"]["dcr_ratio"] < 1.25
    assert 0.4 < m["privacy"]["membership_auc"] < 0.6
    assert m["privacy"]["exact_copies"] == 0
    assert m["verdicts"]["privacy"].startswith("no sign of leakage")
    assert m["verdicts"]["fidelity"].startswith("good")


def test_shuffled_columns_lose_structure(scores):
    good, bad = scores["disjoint"], scores["shuffled"]
    assert bad["fidelity"]["correlation_mae"] > good["fidelity"]["correlation_mae"]
    assert bad["fidelity"]["kendall_mae"] > 1.5 * good["fidelity"]["kendall_mae"]
    for key in ("trend_correlation_mae", "cycle_correlation_mae"):
        assert bad["fidelity"][key] > 5 * good["fidelity"][key]
    assert bad["fidelity"]["autocorrelation_mae"] > 3 * good["fidelity"]["autocorrelation_mae"]
    assert bad["utility"]["discriminative_score"] > good["utility"]["discriminative_score"] + 0.25
    # Same marginals, so the marginal distances stay small.
    assert bad["fidelity"]["ks_mean"] < 0.1
    assert bad["verdicts"]["fidelity"].startswith("poor")


def test_copied_training_patients_are_flagged(scores):
    m = scores["copies"]
    assert m["privacy"]["exact_copies"] == 200
    assert m["privacy"]["dcr_ratio"] == pytest.approx(0.0)
    assert m["privacy"]["membership_auc"] == 1.0
    assert m["verdicts"]["privacy"].startswith("leak")


def test_evaluate_cli_writes_metrics_and_a_self_contained_report(cohort, tmp_path):
    train, unseen, holdout = halves(cohort)
    paths = {}
    for name, frame in (
        ("real", train[train.PatientID < 60]),
        ("synthetic", unseen[unseen.PatientID < 260]),
        ("holdout", holdout[holdout.PatientID < 430]),
    ):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--real",
            str(paths["real"]),
            "--synthetic",
            str(paths["synthetic"]),
            "--holdout",
            str(paths["holdout"]),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    for area, key in (
        ("fidelity", "correlation_mae"),
        ("utility", "discriminative_score"),
        ("utility", "tstr_ratio"),
        ("privacy", "dcr_ratio"),
        ("privacy", "membership_auc"),
        ("fidelity", "mode_coverage"),
    ):
        assert isinstance(metrics[area][key], float), key
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "Verdict" in page and "Discriminative score" in page
    for name in ("distributions.png", "correlations.png", "static_groups.png"):
        assert (out / name).stat().st_size > 1000


def test_evaluate_rejects_a_synthetic_file_of_another_schema(cohort, tmp_path):
    real = tmp_path / "real.csv"
    cohort[cohort.PatientID < 10].to_csv(real, index=False)
    other = tmp_path / "other.csv"
    cohort[cohort.PatientID < 10].drop(columns=["Rel CD4"]).to_csv(other, index=False)
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--real", str(real), "--synthetic", str(other), "--out", str(tmp_path / "e")],
    )
    assert result.exit_code == 2
    assert "other.csv: missing column(s) 'Rel CD4'" in result.output
    assert not (tmp_path / "e").exists()
