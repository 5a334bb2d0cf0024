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
