"""WGAN-GP losses, the gradient penalty and correlation alignment: pure functions.

References: Arjovsky et al. 2017 (arXiv:1701.07875), Gulrajani et al. 2017
(arXiv:1704.00028), Health Gym v1 (doi:10.1038/s41597-022-01784-7).
"""

import tensorflow as tf


def wasserstein_critic_loss(real_scores, fake_scores):
    """``mean D(fake) - mean D(real)``: the critic minimises it."""
    return tf.reduce_mean(fake_scores) - tf.reduce_mean(real_scores)


def wasserstein_generator_loss(fake_scores):
    """``-mean D(fake)``: the generator minimises it."""
    return -tf.reduce_mean(fake_scores)


def gradient_penalty(critic, real, fake, alpha, epsilon=1e-12):
    """Mean of ``(||grad D(x_hat)|| - 1)^2`` at ``x_hat = alpha*real + (1-alpha)*fake``.

    The norm runs over every non-batch axis (time and features), with
    `epsilon` inside the square root so the gradient of the norm stays
    finite where the critic's gradient vanishes. Call it under an outer
    ``tf.GradientTape`` to train on it: the inner tape here is persistent
    only for this input gradient.

    Args:
        critic: callable mapping `(batch, time, features)` to `(batch, 1)`.
        real, fake: tensors `(batch, time, features)`.
        alpha: tensor `(batch, 1, 1)`, one U(0, 1) weight per sequence.

    Returns:
        Scalar tensor, the unweighted penalty.
    """
    interpolated = alpha * real + (1.0 - alpha) * fake
    with tf.GradientTape() as tape:
        tape.watch(interpolated)
        scores = critic(interpolated, training=True)
    gradients = tape.gradient(scores, interpolated)
    axes = list(range(1, len(gradients.shape)))
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=axes) + epsilon)
    return tf.reduce_mean(tf.square(norms - 1.0))


def pooled_correlation(x, epsilon=1e-8):
    """Pearson matrix of the features, pooled over batch and time.

    Health Gym's formula: centre each column, divide by its norm clamped at
    `epsilon`, then ``x^T x``. A constant column (common for a rare level in
    a small batch) gives a zero row and column instead of NaN.

    Args:
        x: tensor `(batch, time, features)` or `(rows, features)`.

    Returns:
        Tensor `(features, features)`.
    """
    rows = tf.reshape(x, (-1, tf.shape(x)[-1]))
    rows = rows - tf.reduce_mean(rows, axis=0, keepdims=True)
    norms = tf.maximum(tf.norm(rows, axis=0, keepdims=True), epsilon)
    rows = rows / norms
    return tf.matmul(rows, rows, transpose_a=True)


def correlation_loss(fake, target):
    """Mean absolute difference between the fake batch's pooled correlation and `target`."""
    return tf.reduce_mean(tf.abs(pooled_correlation(fake) - target))
