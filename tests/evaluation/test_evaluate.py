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


def shuffled_within_patients(frame, seed=0):
    """Each patient's months in a random order: same marginals and pooled
    correlations, no temporal order."""
    rng = np.random.default_rng(seed)
    dynamic = ["VL", "CD4", "Rel CD4", "Base Drug Combo", "Comp. INI", "Comp. NNRTI"]
    dynamic += ["Extra PI", "Extra pk-En", "VL (M)", "CD4 (M)", "Drug (M)"]
    frame = frame.reset_index(drop=True)
    out = frame.copy()
    for rows in frame.groupby("PatientID").indices.values():
        out.loc[rows, dynamic] = frame.loc[rng.permutation(rows), dynamic].to_numpy()
    return out


@pytest.fixture(scope="module")
def scores(cohort, art_schema):
    train, unseen, holdout = halves(cohort)
    results = {}
    for name, synthetic in (
        ("disjoint", unseen),
        ("shuffled", shuffled_columns(unseen)),
        ("within", shuffled_within_patients(unseen)),
        ("copies", train),
    ):
        results[name] = evaluate(
            train,
            synthetic,
            art_schema,
            holdout=holdout,
            seed=0,
            max_epochs=30,
            repeats=1,
            floor=results["disjoint"]["floor"] if results else None,
        )[0]
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


def test_months_shuffled_within_patients_are_graded_poor(scores):
    good, bad = scores["disjoint"], scores["within"]
    # Marginals and pooled correlations survive a within-patient shuffle ...
    assert bad["fidelity"]["ks_mean"] < 0.1
    assert bad["fidelity"]["correlation_mae"] < 2 * good["fidelity"]["correlation_mae"] + 0.01
    # ... temporal order does not, and the verdict says so.
    assert bad["fidelity"]["autocorrelation_mae"] > max(
        0.15, 5 * good["fidelity"]["autocorrelation_mae"]
    )
    assert bad["fidelity"]["switch_ratio_worst"] > 3
    assert good["fidelity"]["switch_ratio_worst"] < 2
    assert bad["verdicts"]["fidelity"].startswith("poor")
    assert "trajectories unlike real ones over time" in bad["verdicts"]["fidelity"]


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
            "--max-epochs",
            "2",
            "--repeats",
            "1",
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
    assert page.count("data:image/png;base64,") == 4
    assert "Verdict" in page and "Discriminative score" in page
    for name in ("distributions.png", "correlations.png", "static_groups.png", "trajectories.png"):
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


def write(frame, path):
    frame.to_csv(path, index=False)
    return str(path)


def test_other_generators_files_are_scored_with_their_defects(cohort, tmp_path):
    """A v1-style file whose Gender flips month to month, with an unknown code."""
    train, unseen, holdout = halves(cohort)
    flipped = unseen[unseen.PatientID < 260].copy()
    odd_months = flipped.Timestep % 2 == 1
    first_patients = flipped.PatientID < 215
    flipped.loc[odd_months & first_patients, "Gender"] = 3 - flipped["Gender"]
    flipped.loc[flipped.index[:12], "Extra PI"] = 9
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--real",
            write(train, tmp_path / "real.csv"),
            "--synthetic",
            write(flipped, tmp_path / "v1.csv"),
            "--holdout",
            write(holdout, tmp_path / "holdout.csv"),
            "--out",
            str(tmp_path / "e"),
            "--max-epochs",
            "2",
            "--repeats",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["fidelity"]["static_violations"]["Gender"] == pytest.approx(15 / 60)
    assert metrics["fidelity"]["static_violations"]["Ethnic"] == 0.0
    assert metrics["fidelity"]["unknown_codes"]["Extra PI"] == pytest.approx(12 / len(flipped))
    assert "static attributes vary within patients (Gender in 25%)" in result.output
    assert "codes outside the schema (Extra PI" in result.output
    assert metrics["verdicts"]["fidelity"].startswith(("fair", "poor"))
    page = (tmp_path / "e" / "report.html").read_text()
    assert "Gender: patients whose static value varies" in page


def test_two_generators_side_by_side(cohort, tmp_path):
    # 200 patients a side: one split per classifier seed (k-fold below 200).
    train, good, holdout = halves(cohort)
    bad = shuffled_within_patients(good)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--real",
            write(train, tmp_path / "real.csv"),
            "--synthetic",
            write(good, tmp_path / "a.csv"),
            "--synthetic",
            write(bad, tmp_path / "b.csv"),
            "--name",
            "ordered",
            "--name",
            "shuffled",
            "--holdout",
            write(holdout, tmp_path / "holdout.csv"),
            "--out",
            str(out),
            "--max-epochs",
            "2",
            "--repeats",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("ordered", "shuffled"):
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics["setup"]["classifier_seeds"] == [0, 1]
        assert len(metrics["utility"]["discriminative_score_runs"]) == 2
        assert metrics["utility"]["discriminative_score_std"] >= 0
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["generators"] == ["ordered", "shuffled"]
    assert summary["best"]["fidelity.autocorrelation_mae"] == ["ordered"]
    page = (out / "comparison.html").read_text()
    assert "<th>ordered</th><th>shuffled</th>" in page
    assert page.count(" *</b>") >= 3


def test_names_must_match_the_synthetic_files(cohort, tmp_path):
    path = write(cohort[cohort.PatientID < 10], tmp_path / "c.csv")
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--real", path, "--synthetic", path, "--name", "a", "--name", "b"],
    )
    assert result.exit_code == 2
    assert "got 2 --name for 1 --synthetic" in result.output
