import keras
import numpy as np
import pytest
import tensorflow as tf

from hg_keras.losses import (
    correlation_loss,
    gradient_penalty,
    marginal_loss,
    pooled_correlation,
    summary_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)


def test_gradient_penalty_of_linear_critic_is_analytic():
    """D(x) = w . x has gradient w everywhere, so GP = (||w|| - 1)^2 exactly."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype("float32")

    def critic(x, training=False):
        return tf.reduce_sum(x * w, axis=[1, 2])[:, None]

    real = tf.constant(rng.normal(size=(5, 4, 3)), tf.float32)
    fake = tf.constant(rng.normal(size=(5, 4, 3)), tf.float32)
    alpha = tf.constant(rng.random((5, 1, 1)), tf.float32)
    expected = (np.linalg.norm(w) - 1.0) ** 2
    assert float(gradient_penalty(critic, real, fake, alpha)) == pytest.approx(expected, rel=1e-5)


def test_gradient_penalty_trains_critic_weights():
    critic = keras.Sequential(
        [
            keras.Input((3, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    real, fake = tf.ones((2, 3, 2)), tf.zeros((2, 3, 2))
    with tf.GradientTape() as tape:
        penalty = gradient_penalty(critic, real, fake, tf.fill((2, 1, 1), 0.5))
    gradients = tape.gradient(penalty, critic.trainable_variables)
    # The output bias does not move the input gradient, so it gets none.
    kernels = [g for g, v in zip(gradients, critic.trainable_variables) if "kernel" in v.path]
    assert len(kernels) == 2
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in kernels)
    assert gradients[-1] is None


def test_wasserstein_losses():
    real, fake = tf.constant([[1.0], [3.0]]), tf.constant([[0.5], [1.5]])
    assert float(wasserstein_critic_loss(real, fake)) == pytest.approx(1.0 - 2.0)
    assert float(wasserstein_generator_loss(fake)) == pytest.approx(-1.0)


def test_pooled_correlation_matches_numpy_and_zeroes_constant_columns():
    x = np.random.default_rng(1).normal(size=(6, 5, 3))
    x[..., 2] = 0.7
    got = pooled_correlation(tf.constant(x)).numpy()
    expected = np.corrcoef(x[..., :2].reshape(-1, 2), rowvar=False)
    np.testing.assert_allclose(got[:2, :2], expected, atol=1e-10)
    assert np.abs(got[2]).max() < 1e-10 and np.abs(got[:, 2]).max() < 1e-10


def test_correlation_loss_is_mean_absolute_difference():
    x = np.random.default_rng(2).normal(size=(4, 3, 2)).astype("float32")
    target = np.eye(2, dtype="float32")
    r = np.corrcoef(x.reshape(-1, 2), rowvar=False)[0, 1]
    assert float(correlation_loss(tf.constant(x), target)) == pytest.approx(abs(r) / 2, rel=1e-4)


def test_weighted_correlation_counts_only_real_rows():
    rng = np.random.default_rng(4)
    x = rng.random((3, 5, 4))
    weights = np.arange(5)[None, :] < np.array([[5], [2], [4]])
    padded = np.where(weights[..., None], x, -1.0)
    expected = np.corrcoef(x[weights], rowvar=False)
    got = pooled_correlation(tf.constant(padded), weights=tf.constant(weights))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)
    unweighted = pooled_correlation(tf.constant(padded)).numpy()
    assert np.abs(unweighted - expected).max() > 0.05  # padding would distort it


def test_gradient_penalty_ignores_padded_steps():
    """Padded steps keep the padding value, so a masked critic sees each patient alone."""
    critic_in = keras.Input((None, 3))
    masked = keras.layers.Masking(-1.0)(critic_in)
    critic = keras.Model(critic_in, keras.layers.Dense(1)(keras.layers.LSTM(4)(masked)))
    rng = np.random.default_rng(5)
    real = rng.random((2, 4, 3)).astype("float32")
    fake = rng.random((2, 4, 3)).astype("float32")
    valid = np.array([[True] * 4, [True, True, False, False]])
    real[~valid], fake[~valid] = -1.0, -1.0
    alpha = tf.constant(rng.random((2, 1, 1)), tf.float32)
    both = gradient_penalty(critic, real, fake, alpha, valid=tf.constant(valid))
    first = gradient_penalty(critic, real[:1], fake[:1], alpha[:1])
    second = gradient_penalty(critic, real[1:, :2], fake[1:, :2], alpha[1:])
    assert float(both) == pytest.approx((float(first) + float(second)) / 2, rel=1e-5)


# Alignment losses beyond v1, each against an independent computation.


def test_autocorrelation_matches_the_evaluation_statistic():
    from hg_keras.evaluation.fidelity import autocorrelation as numpy_acf
    from hg_keras.losses import autocorrelation

    x = np.cumsum(np.random.default_rng(0).normal(size=(6, 12, 2)), axis=1)
    np.testing.assert_allclose(
        autocorrelation(tf.constant(x, tf.float32), 4).numpy(), numpy_acf(x, 4), atol=1e-5
    )


def test_autocorrelation_with_padding_is_that_of_each_patients_real_steps():
    from hg_keras.evaluation.fidelity import autocorrelation as numpy_acf
    from hg_keras.losses import autocorrelation

    x = np.random.default_rng(1).normal(size=(2, 8, 1))
    weights = np.array([[1] * 8, [1] * 5 + [0] * 3], dtype="float32")
    out = autocorrelation(tf.constant(x, tf.float32), 2, weights).numpy()
    each = [numpy_acf(x[:1], 2), numpy_acf(x[1:, :5], 2)]
    np.testing.assert_allclose(out, (each[0] + each[1]) / 2, atol=1e-5)


def test_marginal_loss_is_mean_of_wasserstein_and_total_variation():
    import scipy.stats

    from hg_keras.losses import marginal_loss

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
    out = marginal_loss(tf.constant(fake, tf.float32), tf.constant(real, tf.float32), 2, [(2, 5)])
    assert float(out) == pytest.approx(np.mean(expected), rel=1e-5)


def test_increment_loss_is_wasserstein_of_month_to_month_changes():
    import scipy.stats

    from hg_keras.losses import increment_loss

    rng = np.random.default_rng(5)
    fake, real = rng.random((6, 9, 3)), rng.random((6, 9, 3))
    expected = [
        scipy.stats.wasserstein_distance(
            np.diff(fake[..., c], axis=1).ravel(), np.diff(real[..., c], axis=1).ravel()
        )
        for c in range(2)
    ]
    out = increment_loss(tf.constant(fake, tf.float32), tf.constant(real, tf.float32), 2)
    assert float(out) == pytest.approx(np.mean(expected), rel=1e-5)
    # Same marginals, same patients, months shuffled: the changes differ.
    smooth = np.cumsum(rng.normal(0, 0.02, size=(6, 9, 2)), axis=1) + 0.5
    shuffled = smooth[:, rng.permutation(9)]
    same = increment_loss(tf.constant(smooth, tf.float32), tf.constant(smooth, tf.float32), 2)
    assert float(same) == pytest.approx(0.0, abs=1e-7)
    assert (
        float(increment_loss(tf.constant(shuffled, tf.float32), tf.constant(smooth, tf.float32), 2))
        > 0.005
    )
    # Padded steps (weight 0) on both sides add nothing.
    valid = np.ones((6, 9), bool)
    valid[:, 6:] = False
    padded = np.where(valid[..., None], fake, -1.0)
    masked = increment_loss(
        tf.constant(padded, tf.float32),
        tf.constant(np.where(valid[..., None], real, -1.0), tf.float32),
        2,
        tf.constant(valid),
    )
    cut = increment_loss(
        tf.constant(fake[:, :6], tf.float32), tf.constant(real[:, :6], tf.float32), 2
    )
    # Same changes, compared among more (cancelling) masked rows: scaled by 5/8.
    assert float(masked) == pytest.approx(float(cut) * (6 * 5) / (6 * 8), rel=1e-5)


def test_profile_loss_compares_each_months_means():
    from hg_keras.losses import profile_loss

    rng = np.random.default_rng(7)
    fake, real = rng.random((5, 6, 3)), rng.random((5, 6, 3))
    expected = np.mean(np.abs(fake.mean(0) - real.mean(0)))
    out = profile_loss(tf.constant(fake, tf.float32), tf.constant(real, tf.float32))
    assert float(out) == pytest.approx(expected, rel=1e-5)
    # The same values in other months: pooled marginals agree, the profile does not.
    early = np.zeros((4, 6, 1))
    early[:, 0] = 1.0
    late = np.zeros((4, 6, 1))
    late[:, 5] = 1.0
    assert float(profile_loss(tf.constant(late), tf.constant(early))) == pytest.approx(2 / 6)
    # Padded months count only the patients present.
    valid = np.ones((5, 6), bool)
    valid[3:, 4:] = False
    masked = profile_loss(
        tf.constant(fake, tf.float32), tf.constant(real, tf.float32), tf.constant(valid)
    )
    means = [np.stack([x[valid[:, t], t].mean(0) for t in range(6)]) for x in (fake, real)]
    assert float(masked) == pytest.approx(np.mean(np.abs(means[0] - means[1])), rel=1e-5)


def test_profile_loss_against_cohort_month_means():
    from hg_keras.losses import profile_loss

    rng = np.random.default_rng(8)
    fake, cohort = rng.random((5, 4, 3)), rng.random((7, 4, 3)).mean(axis=0)
    out = profile_loss(tf.constant(fake, tf.float32), tf.constant(cohort, tf.float32))
    assert float(out) == pytest.approx(np.mean(np.abs(fake.mean(0) - cohort)), rel=1e-5)
    # A curriculum prefix uses the target's first months.
    prefix = profile_loss(tf.constant(fake[:, :2], tf.float32), tf.constant(cohort, tf.float32))
    assert float(prefix) == pytest.approx(
        np.mean(np.abs(fake[:, :2].mean(0) - cohort[:2])), rel=1e-5
    )
    # Months no generated patient reaches do not count.
    valid = np.ones((5, 4), bool)
    valid[:, 3:] = False
    masked = profile_loss(
        tf.constant(fake, tf.float32), tf.constant(cohort, tf.float32), tf.constant(valid)
    )
    assert float(masked) == pytest.approx(
        np.mean(np.abs(fake[:, :3].mean(0) - cohort[:3])), rel=1e-5
    )


def test_level_entropy_is_weighted_normalised_entropy():
    import scipy.stats

    from hg_keras.losses import level_entropy

    rng = np.random.default_rng(6)
    x = np.concatenate(
        [rng.dirichlet(np.ones(3), size=(4, 5)), rng.dirichlet(np.ones(2), size=(4, 5))], axis=-1
    )
    per_block = [
        scipy.stats.entropy(x[..., 0:3], axis=-1).mean() / np.log(3),
        scipy.stats.entropy(x[..., 3:5], axis=-1).mean() / np.log(2),
    ]
    out = level_entropy(tf.constant(x, tf.float32), [(0, 3), (3, 5)], [0.9, 0.1])
    assert float(out) == pytest.approx(0.9 * per_block[0] + 0.1 * per_block[1], rel=1e-5)
    one_hot = np.eye(3)[rng.integers(0, 3, size=(4, 5))]
    assert float(level_entropy(tf.constant(one_hot, tf.float32), [(0, 3)], [1.0])) < 1e-6
    uniform = np.full((4, 5, 3), 1 / 3)
    assert float(level_entropy(tf.constant(uniform, tf.float32), [(0, 3)], [1.0])) == (
        pytest.approx(1.0, rel=1e-5)
    )


def test_switch_rate_of_one_hot_rows_counts_changes():
    from hg_keras.losses import switch_rates

    codes = np.array([[0, 0, 1, 1, 1], [2, 2, 2, 0, 2]])
    x = tf.constant(np.eye(3)[codes], tf.float32)
    for renewal in ([0.0], [1.0], [0.3]):
        assert float(switch_rates(x, [(0, 3)], renewal)[0]) == pytest.approx(3 / 8)


def test_expected_switch_rate_matches_the_sampler_it_models():
    """The loss's formula against Monte Carlo draws of draw_levels itself."""
    from hg_keras.data import FeatureLayout, Schema
    from hg_keras.losses import switch_rates
    from hg_keras.noise import draw_levels

    schema = Schema.from_dict(
        {
            "id": "id",
            "time": "t",
            "variables": [{"name": "drug", "kind": "categorical", "levels": {0: "a", 1: "b"}}],
        }
    )
    layout = FeatureLayout(schema)
    p = np.array([0.2, 0.6, 0.5, 0.5, 0.9])
    probabilities = np.stack([1 - p, p], axis=-1)[None].repeat(20_000, axis=0)
    for rate in (0.0, 0.3, 1.0):
        drawn = draw_levels(
            tf.constant(probabilities, tf.float32),
            layout,
            tf.constant([0, 7], tf.int64),
            renewal={"drug": rate},
        ).numpy()
        observed = np.mean(drawn[:, 1:, 1] != drawn[:, :-1, 1])
        expected = float(
            switch_rates(tf.constant(probabilities[:1], tf.float32), [(0, 2)], [rate])[0]
        )
        assert observed == pytest.approx(expected, abs=0.01), rate
        # Whatever the renewal rate, each month keeps its generated probabilities.
        np.testing.assert_allclose(drawn[..., 1].mean(axis=0), p, atol=0.015)


def test_kept_draws_switch_in_exactly_the_total_variation_for_many_levels():
    """Maximal coupling: each month keeps its probabilities, switches = TV(p_t, p_t+1)."""
    from hg_keras.losses import switch_rates
    from hg_keras.noise import draw_blocks

    p = np.array([[0.5, 0.1, 0.1, 0.3], [0.1, 0.1, 0.5, 0.3], [0.1, 0.4, 0.2, 0.3], [0.25] * 4])
    probabilities = np.repeat(p[None], 40_000, axis=0).astype(np.float32)
    for rate in (0.0, 0.2):
        drawn = draw_blocks(
            tf.constant(probabilities), [(0, 4)], [rate], tf.constant([3, 5], tf.int64)
        ).numpy()
        codes = drawn.argmax(-1)
        np.testing.assert_allclose(drawn.mean(axis=0), p, atol=0.01)
        observed = np.mean(codes[:, 1:] != codes[:, :-1])
        expected = float(switch_rates(tf.constant(p[None], tf.float32), [(0, 4)], [rate])[0])
        assert observed == pytest.approx(expected, abs=0.006), rate
    # Reading one kept uniform through the cumulative probabilities (NumPy)
    # switches more: moving mass between two levels moves those between them.
    u = np.random.default_rng(0).random((40_000, 1))
    crossing = (np.cumsum(p, axis=-1)[None] < u[..., None]).sum(-1)
    tv = np.mean(0.5 * np.abs(np.diff(p, axis=0)).sum(-1))
    assert np.mean(crossing[:, 1:] != crossing[:, :-1]) > tv + 0.02


def test_within_patient_correlation_is_mean_of_per_patient_corrcoef():
    from hg_keras.losses import within_patient_correlation

    x = np.random.default_rng(3).normal(size=(4, 7, 3))
    expected = np.mean([np.corrcoef(patient.T) for patient in x], axis=0)
    out = within_patient_correlation(tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_temporal_loss_is_zero_for_the_same_batch_and_grows_with_shuffling():
    from hg_keras.losses import temporal_loss

    rng = np.random.default_rng(4)
    walk = np.cumsum(rng.normal(size=(8, 20, 2)), axis=1)
    walk = (walk - walk.min()) / (walk.max() - walk.min())
    codes = np.eye(2)[(np.arange(20) >= rng.integers(5, 15, size=(8, 1))).astype(int)]
    real = tf.constant(np.concatenate([walk, codes], axis=-1), tf.float32)
    shuffled = tf.constant(
        np.concatenate([walk, codes], axis=-1)[:, rng.permutation(20)], tf.float32
    )
    assert float(temporal_loss(real, real, 2, [(2, 4)], [0.0])) == pytest.approx(0.0, abs=1e-6)
    assert float(temporal_loss(shuffled, real, 2, [(2, 4)], [0.0])) > 0.2


def _batch_with_groups(rng, patients=24, months=7):
    """Numerics in columns 0-1, static blocks 2-4 and 5-6, a time-varying block 7-9."""
    numerics = rng.random((patients, months, 2))
    static = [np.eye(3)[rng.integers(0, 3, patients)], np.eye(2)[rng.integers(0, 2, patients)]]
    static = np.repeat(np.concatenate(static, axis=-1)[:, None], months, axis=1)
    dynamic = rng.dirichlet(np.ones(3), size=(patients, months))
    return np.concatenate([numerics, static, dynamic], axis=-1)


def _numpy_group_loss(fake, real, valid):
    """The loop the docstring describes: per static level, per variable."""
    total = 0.0
    for block in ((2, 5), (5, 7)):
        for level in range(*block):
            in_real, in_fake = real[:, 0, level] == 1, fake[:, 0, level] == 1
            if not in_real.any():
                continue
            means = []
            for x, members in ((fake, in_fake), (real, in_real)):
                patients = [x[p][valid[p]].mean(axis=0) for p in np.flatnonzero(members)]
                means.append(np.mean(patients, axis=0) if patients else np.zeros(x.shape[-1]))
            gap = np.abs(means[0] - means[1])
            variables = [gap[0], gap[1], 0.5 * gap[7:10].sum()]
            total += in_real.mean() * np.mean(variables)
    return total / 2


def test_group_loss_matches_a_numpy_loop_over_levels_with_padding():
    from hg_keras.losses import group_loss

    rng = np.random.default_rng(4)
    real, fake = _batch_with_groups(rng), _batch_with_groups(rng)
    fake[:, :, 2:7] = real[:, :, 2:7]  # conditional: the real patients' groups
    fake[fake[:, 0, 2] == 1, :, 0] += 0.5  # the first level's first numeric shifted
    valid = np.arange(7)[None] < rng.integers(3, 8, size=(24, 1))
    args = (2, [(2, 5), (5, 7)], [(7, 10)])
    got = float(group_loss(tf.constant(fake), tf.constant(real), *args, tf.constant(valid)))
    assert got == pytest.approx(_numpy_group_loss(fake, real, valid), rel=1e-6)
    # Unconditional batches: each batch's own members.
    other = _batch_with_groups(rng)
    everywhere = np.ones((24, 7), bool)
    got = float(group_loss(tf.constant(other), tf.constant(real), *args))
    assert got == pytest.approx(_numpy_group_loss(other, real, everywhere), rel=1e-6)
    assert float(group_loss(tf.constant(real), tf.constant(real), *args)) == 0.0
    assert float(group_loss(tf.constant(fake), tf.constant(real), 2, [], [(7, 10)])) == 0.0


def test_group_loss_sees_a_group_shift_the_pooled_marginals_hide():
    from hg_keras.losses import group_loss, marginal_loss

    real = _batch_with_groups(np.random.default_rng(5), patients=40)
    first = np.arange(40) < 20
    real[:, :, 5:7] = np.eye(2)[(~first).astype(int)][:, None]
    fake = real.copy()
    # The same pooled values, each group holding the other's.
    real[:, :, 0] = np.where(first[:, None], 0.9, 0.1)
    fake[:, :, 0] = np.where(first[:, None], 0.1, 0.9)
    real, fake = tf.constant(real), tf.constant(fake)
    assert float(marginal_loss(fake[..., :1], real[..., :1], 1, [])) == 0.0
    # The second block alone: both levels half the batch, 0.8 apart in one of three variables.
    grouped = float(group_loss(fake, real, 2, [(5, 7)], [(7, 10)]))
    assert grouped == pytest.approx(0.8 / 3, rel=1e-6)


def test_linear_slopes_match_numpy_polyfit_and_skip_padding():
    from hg_keras.losses import linear_slopes

    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 7, 2))
    weights = np.arange(7)[None, :] < np.array([[7], [5], [3], [6]])
    got = linear_slopes(tf.constant(x), tf.constant(weights)).numpy()
    for p, n in enumerate(weights.sum(1)):
        for c in range(2):
            assert got[p, c] == pytest.approx(np.polyfit(np.arange(n), x[p, :n, c], 1)[0])


def test_trend_loss_compares_the_share_of_patients_whose_slopes_agree_in_sign():
    from hg_keras.losses import trend_loss

    rng = np.random.default_rng(6)
    time = np.arange(8.0)[None, :]
    slopes = rng.normal(size=(200, 3))
    slopes[:, 1] = slopes[:, 0] + 0.3 * rng.normal(size=200)  # mostly agree in sign
    real = slopes[:, None, :] * time[..., None] + 0.01 * rng.normal(size=(200, 8, 3))
    flipped = real.copy()
    flipped[::2, :, 1] *= -1  # half the patients' second numeric trends the other way
    signs = np.sign(slopes)
    # NumPy reference: mean over the 6 ordered off-diagonal pairs of |agreement gap|.
    fake_signs = signs.copy()
    fake_signs[::2, 1] *= -1
    gap = np.abs(fake_signs.T @ fake_signs - signs.T @ signs) / 200
    reference = gap[~np.eye(3, dtype=bool)].mean()
    got = float(trend_loss(tf.constant(flipped), tf.constant(real), 3, sharpness=1e4))
    assert reference > 0.1 and got == pytest.approx(reference, abs=0.01)
    assert float(trend_loss(tf.constant(real), tf.constant(real), 3, sharpness=1e4)) < 0.01
    assert float(trend_loss(tf.constant(real), tf.constant(real), 1)) == 0.0


def _numpy_summary_loss(fake, real, numeric_width, valid):
    """Loop over patients: each's mean, min and max of its valid steps, sorted per statistic."""
    gaps = []
    for column in range(numeric_width):
        per_batch = []
        for x in (fake, real):
            rows = []
            for patient in range(x.shape[0]):
                values = x[patient, valid[patient] > 0, column]
                rows.append([values.mean(), values.min(), values.max()])
            per_batch.append(np.sort(np.asarray(rows), axis=0))
        gaps.append(np.abs(per_batch[0] - per_batch[1]))
    return np.mean(gaps)


def test_summary_loss_matches_a_numpy_loop_over_patients_with_padding():
    rng = np.random.default_rng(3)
    fake, real = rng.random((2, 12, 9, 5)).astype(np.float32)
    valid = np.ones((12, 9), np.float32)
    for patient, length in enumerate(rng.integers(1, 10, 12)):
        valid[patient, length:] = 0
    fake[valid == 0] = 0.7  # padding must not count as anybody's maximum or minimum
    got = summary_loss(tf.constant(fake), tf.constant(real), 3, tf.constant(valid))
    assert float(got) == pytest.approx(_numpy_summary_loss(fake, real, 3, valid), rel=1e-5)
    assert float(summary_loss(tf.constant(real), tf.constant(real), 3)) == 0.0


def test_summary_loss_sees_rare_extreme_patients_the_pooled_marginal_hardly_weighs():
    rng = np.random.default_rng(4)
    real = rng.normal(0.5, 0.02, (40, 60, 1)).astype(np.float32)
    real[:20, 30] = 0.99  # half the patients: one extreme month (a rebound)
    calm = real.copy()
    calm[:20, 30] = 0.5
    marginal = float(marginal_loss(tf.constant(calm), tf.constant(real), 1, []))
    summary = float(summary_loss(tf.constant(calm), tf.constant(real), 1))
    # The marginal spreads the 20 extreme months over 2,400; the maxima are half the patients.
    assert summary > 15 * marginal
    np.testing.assert_allclose(summary, _numpy_summary_loss(calm, real, 1, np.ones((40, 60))))
