import numpy as np
import pandas as pd
import pytest
import scipy.stats

from hg_keras.data import CohortTransformer, load_cohort
from hg_keras.evaluation import fidelity


@pytest.fixture(scope="module")
def cohorts(art_schema):
    frame = load_cohort(patients=60)
    real, other = frame[frame.PatientID < 30], frame[frame.PatientID >= 30]
    transformer = CohortTransformer(art_schema).fit(real)
    return transformer, transformer.encode(real, np.float64), transformer.encode(other, np.float64)


def test_marginals_match_hand_computed_ks_w1_and_tvd(cohorts):
    transformer, real, other = cohorts
    result = fidelity.marginals(real, other, transformer.layout)
    r, s = real[..., 1].ravel(), other[..., 1].ravel()
    grid = np.sort(np.r_[r, s])
    ecdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    assert result["CD4"]["ks"] == pytest.approx(np.abs(ecdf(r) - ecdf(s)).max())
    # Equal sizes: W1 is the mean gap between sorted samples.
    assert result["CD4"]["wasserstein"] == pytest.approx(np.mean(np.abs(np.sort(r) - np.sort(s))))
    block = transformer.layout.block("Base Drug Combo")
    p = real[..., block.start : block.end].reshape(-1, 6).mean(0)
    q = other[..., block.start : block.end].reshape(-1, 6).mean(0)
    assert result["Base Drug Combo"]["tvd"] == pytest.approx(0.5 * np.abs(p - q).sum())


def test_pearson_matrix_and_mae(cohorts):
    _, real, other = cohorts
    columns = [0, 1, 2, 9, 10]
    expected = np.corrcoef(real[..., columns].reshape(-1, 5), rowvar=False)
    got = fidelity.pearson_matrix(real[..., columns])
    np.testing.assert_allclose(got, expected, atol=1e-10)
    a, b = np.eye(3), np.full((3, 3), 0.5)
    np.fill_diagonal(b, 1.0)
    assert fidelity.correlation_mae(a, b) == pytest.approx(0.5)


def test_kendall_matrix_matches_scipy():
    frame = pd.DataFrame(
        {"a": [1, 2, 3, 4, 5, 6], "b": [2, 1, 4, 3, 6, 5], "c": [1, 1, 2, 2, 1, 1]}
    )
    matrix = fidelity.kendall_matrix(frame, ["a", "b", "c"])
    assert matrix[0, 1] == pytest.approx(scipy.stats.kendalltau(frame.a, frame.b).statistic)
    assert matrix[1, 2] == pytest.approx(scipy.stats.kendalltau(frame.b, frame.c).statistic)
    assert np.allclose(np.diag(matrix), 1.0)


def test_dynamic_correlations_match_a_per_patient_loop():
    rng = np.random.default_rng(0)
    t = np.arange(12)
    x = np.stack(
        [
            np.stack(
                [
                    0.1 * t + rng.normal(size=12),
                    -0.2 * t + rng.normal(size=12),
                    rng.normal(size=12),
                ],
                axis=1,
            )
            for _ in range(8)
        ]
    )
    trend, cycle = fidelity.dynamic_correlations(x)
    z_trend, z_cycle = [], []
    for patient in x:
        fitted = np.stack([np.polyval(np.polyfit(t, patient[:, k], 1), t) for k in range(3)], 1)
        residual = patient - fitted
        z_trend.append(
            np.arctanh(np.clip(np.corrcoef(fitted, rowvar=False)[0, 1], -0.999999, 0.999999))
        )
        z_cycle.append(np.arctanh(np.corrcoef(residual, rowvar=False)[0, 2]))
    assert trend[0, 1] == pytest.approx(np.tanh(np.mean(z_trend)), abs=1e-6)
    assert cycle[0, 2] == pytest.approx(np.tanh(np.mean(z_cycle)), abs=1e-6)
    assert trend[0, 1] < -0.99  # opposite linear trends


def test_autocorrelation_matches_loop():
    x = np.random.default_rng(1).normal(size=(5, 10, 3)).cumsum(axis=1)
    x[0, :, 0] = 2.0  # a constant series is skipped
    x[:, :, 2] = 1.0  # a variable constant in every patient scores 0
    got = fidelity.autocorrelation(x, 3)
    for k in range(2):
        for lag in (1, 2, 3):
            values = []
            for patient in x[:, :, k]:
                c = patient - patient.mean()
                if np.sum(c**2) > 0:
                    values.append(np.sum(c[lag:] * c[:-lag]) / np.sum(c**2))
            assert got[k, lag - 1] == pytest.approx(np.mean(values))
    np.testing.assert_array_equal(got[2], 0.0)


def test_switch_rates_count_changes_within_patients():
    frame = pd.DataFrame({"id": [0, 0, 0, 1, 1, 1], "drug": [1, 1, 2, 2, 2, 2]})
    assert fidelity.switch_rates(frame, ["drug"], "id") == {"drug": pytest.approx(1 / 4)}


def test_joint_static_table_and_mode_coverage():
    frame = pd.DataFrame(
        {
            "id": [0, 0, 1, 1, 2, 2, 3, 3],
            "sex": [1, 1, 1, 1, 2, 2, 1, 1],
            "eth": [4, 4, 4, 4, 2, 2, 3, 3],
        }
    )
    table = fidelity.joint_static_table(frame, ["sex", "eth"], "id")
    assert table == {"sex=1, eth=4": 0.5, "sex=2, eth=2": 0.25, "sex=1, eth=3": 0.25}
    collapsed = {"sex=1, eth=4": 0.95, "sex=1, eth=3": 0.05}
    result = fidelity.mode_coverage(table, collapsed)
    assert result["coverage"] == pytest.approx(0.0)
    assert result["smallest_synthetic_share"] in (0.0, 0.05)
    assert fidelity.mode_coverage(table, table)["coverage"] == 1.0
    named = fidelity.joint_static_table(frame, ["sex", "eth"], "id", {"sex": {1: "M", 2: "F"}})
    assert named["sex=M, eth=4"] == 0.5
