import keras
import numpy as np
import pytest
import tensorflow as tf

from hg_keras.losses import (
    correlation_loss,
    gradient_penalty,
    pooled_correlation,
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


# The batch statistics the alignment terms compare, each against an independent computation.


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


def test_linear_slopes_match_numpy_polyfit_and_skip_padding():
    from hg_keras.losses import linear_slopes

    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 7, 2))
    weights = np.arange(7)[None, :] < np.array([[7], [5], [3], [6]])
    got = linear_slopes(tf.constant(x), tf.constant(weights)).numpy()
    for p, n in enumerate(weights.sum(1)):
        for c in range(2):
            assert got[p, c] == pytest.approx(np.polyfit(np.arange(n), x[p, :n, c], 1)[0])
