"""The generator's alignment terms, each against an independent computation."""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from hg_keras.alignment import (
    TERMS,
    AlignmentTerm,
    Confidence,
    Correlation,
    Encoding,
    Increment,
    Marginal,
    Tails,
    Temporal,
    Trend,
    build_terms,
    register,
)
from hg_keras.errors import InputError


def f32(x):
    return tf.constant(x, tf.float32)


def test_correlation_is_the_mean_absolute_gap_to_the_cohorts_matrix():
    x = np.random.default_rng(2).normal(size=(4, 3, 2)).astype("float32")
    r = np.corrcoef(x.reshape(-1, 2), rowvar=False)[0, 1]
    term = Correlation(Encoding(correlation_target=np.eye(2, dtype="float32")))
    assert float(term(None, f32(x))) == pytest.approx(abs(r) / 2, rel=1e-4)


def test_marginal_is_mean_of_wasserstein_and_total_variation():
    rng = np.random.default_rng(2)
    numeric = [rng.random((5, 4, 2)), rng.random((5, 4, 2)) ** 2]
    levels = [np.eye(3)[rng.integers(0, 3, size=(5, 4))] for _ in range(2)]
    fake, real = (np.concatenate([n, lv], axis=-1) for n, lv in zip(numeric, levels))
    expected = [
        scipy.stats.wasserstein_distance(fake[..., c].ravel(), real[..., c].ravel())
        for c in range(2)
    ]
    shares = [x[..., 2:].reshape(-1, 3).mean(axis=0) for x in (fake, real)]
    expected.append(0.5 * np.abs(shares[0] - shares[1]).sum())
    term = Marginal(Encoding(numeric_width=2, blocks=((2, 5),)))
    assert float(term(f32(real), f32(fake))) == pytest.approx(np.mean(expected), rel=1e-5)


def test_increment_is_wasserstein_of_month_to_month_changes():
    rng = np.random.default_rng(5)
    fake, real = rng.random((6, 9, 3)), rng.random((6, 9, 3))
    expected = [
        scipy.stats.wasserstein_distance(
            np.diff(fake[..., c], axis=1).ravel(), np.diff(real[..., c], axis=1).ravel()
        )
        for c in range(2)
    ]
    term = Increment(Encoding(numeric_width=2))
    assert float(term(f32(real), f32(fake))) == pytest.approx(np.mean(expected), rel=1e-5)
    # Same marginals, same patients, months shuffled: the changes differ.
    smooth = np.cumsum(rng.normal(0, 0.02, size=(6, 9, 2)), axis=1) + 0.5
    shuffled = smooth[:, rng.permutation(9)]
    assert float(term(f32(smooth), f32(smooth))) == pytest.approx(0.0, abs=1e-7)
    assert float(term(f32(smooth), f32(shuffled))) > 0.005
    # Padded steps (masked on both sides) add nothing: the same changes,
    # compared among more cancelling rows, scaled by 5/8.
    valid = np.ones((6, 9), bool)
    valid[:, 6:] = False
    masked = term(
        f32(np.where(valid[..., None], real, -1.0)),
        f32(np.where(valid[..., None], fake, -1.0)),
        tf.constant(valid),
    )
    cut = term(f32(real[:, :6]), f32(fake[:, :6]))
    assert float(masked) == pytest.approx(float(cut) * (6 * 5) / (6 * 8), rel=1e-5)


def test_confidence_is_persistence_weighted_normalised_entropy():
    rng = np.random.default_rng(6)
    x = np.concatenate(
        [rng.dirichlet(np.ones(3), size=(4, 5)), rng.dirichlet(np.ones(2), size=(4, 5))], axis=-1
    )
    per_block = [
        scipy.stats.entropy(x[..., 0:3], axis=-1).mean() / np.log(3),
        scipy.stats.entropy(x[..., 3:5], axis=-1).mean() / np.log(2),
    ]
    term = Confidence(Encoding(dynamic_blocks=((0, 3), (3, 5)), renewal=(0.1, 0.9)))
    assert float(term(None, f32(x))) == pytest.approx(
        0.9 * per_block[0] + 0.1 * per_block[1], rel=1e-5
    )
    one_block = Confidence(Encoding(dynamic_blocks=((0, 3),), renewal=(0.0,)))
    one_hot = np.eye(3)[rng.integers(0, 3, size=(4, 5))]
    assert float(one_block(None, f32(one_hot))) < 1e-6
    assert float(one_block(None, f32(np.full((4, 5, 3), 1 / 3)))) == pytest.approx(1.0, rel=1e-5)


def test_temporal_is_zero_for_the_same_batch_and_grows_with_shuffling():
    rng = np.random.default_rng(4)
    walk = np.cumsum(rng.normal(size=(8, 20, 2)), axis=1)
    walk = (walk - walk.min()) / (walk.max() - walk.min())
    codes = np.eye(2)[(np.arange(20) >= rng.integers(5, 15, size=(8, 1))).astype(int)]
    real = np.concatenate([walk, codes], axis=-1)
    term = Temporal(Encoding(numeric_width=2, dynamic_blocks=((2, 4),), renewal=(0.0,)))
    assert float(term(f32(real), f32(real))) == pytest.approx(0.0, abs=1e-6)
    assert float(term(f32(real), f32(real[:, rng.permutation(20)]))) > 0.2


def test_temporal_autocorrelation_parts_are_numpys_acf_gaps_of_levels_and_changes():
    """One numeric, no blocks: the term is the mean of the |ACF gap| over lags 1..6
    of the levels and of the month-to-month changes (NumPy loop)."""

    def acf(x, lags=6):
        out = []
        for patient in x[..., 0]:
            c = patient - patient.mean()
            out.append([np.sum(c[k:] * c[:-k]) / np.sum(c * c) for k in range(1, lags + 1)])
        return np.mean(out, axis=0)

    rng = np.random.default_rng(8)
    real = np.cumsum(rng.normal(size=(5, 12, 1)), axis=1)
    fake = rng.normal(size=(5, 12, 1))
    term = Temporal(Encoding(numeric_width=1))
    levels = np.mean(np.abs(acf(real) - acf(fake)))
    changes = np.mean(np.abs(acf(np.diff(real, axis=1)) - acf(np.diff(fake, axis=1))))
    assert float(term(f32(real), f32(fake))) == pytest.approx((levels + changes) / 2, rel=1e-4)
    # Three visits: two changes about their mean always correlate -0.5, so only
    # the levels' part can tell the batches apart and the term is that part alone.
    short = [x[:, :3] for x in (real, fake)]
    levels = np.mean(np.abs(acf(short[0]) - acf(short[1])))
    assert levels > 0.05
    assert float(term(*map(f32, short))) == pytest.approx(levels, rel=1e-4)
    # Training traces the term with an unknown time length.
    spec = tf.TensorSpec((None, None, 1), tf.float32)
    traced = tf.function(lambda r, f: term(r, f), input_signature=[spec, spec])
    assert float(traced(*map(f32, short))) == pytest.approx(levels, rel=1e-4)


def test_trend_compares_the_share_of_patients_whose_slopes_agree_in_sign():
    rng = np.random.default_rng(6)
    time = np.arange(8.0)[None, :]
    slopes = rng.normal(size=(200, 3))
    slopes[:, 1] = slopes[:, 0] + 0.3 * rng.normal(size=200)  # mostly agree in sign
    real = slopes[:, None, :] * time[..., None] + 0.01 * rng.normal(size=(200, 8, 3))
    flipped = real.copy()
    flipped[::2, :, 1] *= -1  # half the patients' second numeric trends the other way
    signs = np.sign(slopes)
    fake_signs = signs.copy()
    fake_signs[::2, 1] *= -1
    gap = np.abs(fake_signs.T @ fake_signs - signs.T @ signs) / 200
    reference = gap[~np.eye(3, dtype=bool)].mean()
    term = Trend(Encoding(numeric_width=3))
    term.sharpness = 1e4
    assert reference > 0.1 and float(term(tf.constant(real), tf.constant(flipped))) == (
        pytest.approx(reference, abs=0.01)
    )
    assert float(term(tf.constant(real), tf.constant(real))) < 0.01
    assert float(Trend(Encoding(numeric_width=1))(tf.constant(real), tf.constant(real))) == 0.0


def test_build_terms_keeps_weighted_terms_and_refuses_unknown_names():
    terms = build_terms({"marginal": 2.0, "trend": 0.0}, Encoding(numeric_width=1))
    assert [(type(t), w) for t, w in terms] == [(Marginal, 2.0)]
    with pytest.raises(InputError, match="unknown term 'margin'; expected one of correlation"):
        build_terms({"margin": 1.0}, Encoding())
    with pytest.raises(InputError, match="marginal must be a number, zero or positive"):
        build_terms({"marginal": -1}, Encoding())


def test_a_registered_term_of_ones_own_is_nameable_in_the_config(tmp_path):
    from hg_keras.config import builtin_config_path, load_config

    @register
    class MeanGap(AlignmentTerm):
        """Gap of the pooled means: a user's own term."""

        name = "mean_gap"

        def __call__(self, real, fake, valid=None):
            return tf.abs(tf.reduce_mean(fake) - tf.reduce_mean(real))

    try:
        path = tmp_path / "own.yaml"
        path.write_text(
            f"extends: {builtin_config_path('quick')}\n"
            "training:\n  alignment: {correlation: 10, mean_gap: 5}\n"
        )
        config = load_config(path)
        assert config.training.alignment == {"correlation": 10.0, "mean_gap": 5.0}
        terms = build_terms(config.training.alignment, Encoding(correlation_target=np.eye(2)))
        assert [t.name for t, _ in terms] == ["correlation", "mean_gap"]
    finally:
        TERMS.pop("mean_gap")


def test_tails_weights_each_quantile_gap_by_its_anderson_darling_root():
    rng = np.random.default_rng(4)
    fake, real = rng.random((3, 5, 2)), rng.random((3, 5, 2)) ** 3
    valid = np.ones((3, 5), bool)
    valid[0, 3:] = False  # a patient with 3 months of 5
    expected = []
    for c in range(2):
        f, r = (np.sort(x[..., c][valid]) for x in (fake, real))
        n = len(f)
        total = 0.0
        for i in range(n):
            q = (i + 0.5) / n
            total += abs(f[i] - r[i]) / (np.pi * np.sqrt(q * (1 - q)))
        expected.append(total / n)
    term = Tails(Encoding(numeric_width=2))
    got = term(f32(real), f32(fake), tf.constant(valid))
    assert float(got) == pytest.approx(np.mean(expected), rel=1e-5)


def test_tails_weighs_a_missing_extreme_more_than_the_plain_marginal_does():
    real = np.full((1, 100, 1), 0.5)
    real[0, :5, 0] = 1.0  # 5 % of months far out
    fake = np.full((1, 100, 1), 0.5)
    encoding = Encoding(numeric_width=1)
    plain, tails = (term(encoding)(f32(real), f32(fake)) for term in (Marginal, Tails))
    assert float(plain) == pytest.approx(0.025, rel=1e-5)
    assert float(tails) > 2 * float(plain)


def test_released_marginals_replace_the_real_batch_as_the_target():
    from hg_keras.privacy import RELEASE_BINS, ReleasedMarginals

    rng = np.random.default_rng(5)
    histogram = rng.random(RELEASE_BINS)
    released = ReleasedMarginals(
        histograms=(tuple(histogram / histogram.sum()), (0.2, 0.3, 0.5)),
        numeric_width=1,
        blocks=((1, 4),),
    )
    fake = np.concatenate(
        [rng.random((4, 6, 1)), np.eye(3)[rng.integers(0, 3, size=(4, 6))]], axis=-1
    )
    # The reference: sorted fake values against the released CDF inverted by a loop
    # over bins, at the plotting positions (i + 0.5) / n.
    values = np.sort(fake[..., 0].ravel())
    cumulative = np.concatenate([[0.0], np.cumsum(histogram / histogram.sum())])
    targets = []
    for i in range(len(values)):
        q = (i + 0.5) / len(values)
        b = max(j for j in range(RELEASE_BINS) if cumulative[j] <= q)
        targets.append(
            (b + (q - cumulative[b]) / (cumulative[b + 1] - cumulative[b])) / RELEASE_BINS
        )
    gap = np.abs(values - np.asarray(targets))
    shares = fake[..., 1:].reshape(-1, 3).mean(axis=0)
    tvd = 0.5 * np.abs(shares - [0.2, 0.3, 0.5]).sum()
    encoding = Encoding(numeric_width=1, blocks=((1, 4),), released=released)
    garbage = f32(np.full((9, 2, 4), 7.0))  # the real batch is not read
    marginal = float(Marginal(encoding)(garbage, f32(fake)))
    assert marginal == pytest.approx((gap.mean() + tvd) / 2, abs=2e-3)
    q = (np.arange(len(values)) + 0.5) / len(values)
    weighted = (gap / (np.pi * np.sqrt(q * (1 - q)))).mean()
    assert float(Tails(encoding)(garbage, f32(fake))) == pytest.approx(weighted, abs=2e-3)


def test_levers_doc_gives_every_shipped_term_its_default_weight():
    """docs/levers.md's table of alignment terms is what a config without `alignment` gets."""
    from pathlib import Path

    from hg_keras.config import ALIGNMENT

    text = (Path(__file__).parents[1] / "docs" / "levers.md").read_text()
    table = text.split("## Alignment terms")[1].split("\n\n")[2]
    documented = {}
    for row in table.splitlines()[2:]:
        name, weight = (cell.strip() for cell in row.split("|")[1:3])
        documented[name.strip("`")] = float(weight.split()[0])
    assert documented == ALIGNMENT
    assert set(ALIGNMENT) <= set(TERMS)
