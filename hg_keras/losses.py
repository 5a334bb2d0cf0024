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


def gradient_penalty(critic, real, fake, alpha, epsilon=1e-12, valid=None):
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
        valid: optional bool tensor `(batch, time)`, False at padded steps;
            those keep the real (padding) value exactly, so the critic masks
            them and they add nothing to the norm.

    Returns:
        Scalar tensor, the unweighted penalty.
    """
    interpolated = alpha * real + (1.0 - alpha) * fake
    if valid is not None:
        interpolated = tf.where(valid[..., None], interpolated, real)
    with tf.GradientTape() as tape:
        tape.watch(interpolated)
        scores = critic(interpolated, training=True)
    gradients = tape.gradient(scores, interpolated)
    axes = list(range(1, len(gradients.shape)))
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=axes) + epsilon)
    return tf.reduce_mean(tf.square(norms - 1.0))


def pooled_correlation(x, epsilon=1e-8, all_reduce=None, weights=None):
    """Pearson matrix of the features, pooled over batch and time.

    Health Gym's formula: centre each column, divide by its norm clamped at
    `epsilon`, then ``x^T x``. A constant column (common for a rare level in
    a small batch) gives a zero row and column instead of NaN.

    Under a distribution strategy pass `all_reduce` (a function summing a
    tensor over the replicas, e.g. ``ReplicaContext.all_reduce("sum", .)``):
    the mean and the centred cross-products are then those of the global
    batch, so every replica gets the same matrix, and gradients flow back to
    each replica's own rows (the all-reduce of a gradient is its all-reduce).

    Args:
        x: tensor `(batch, time, features)` or `(rows, features)`.
        epsilon: float, the smallest column norm.
        all_reduce: optional function, sum over replicas.
        weights: optional 0/1 tensor `(batch, time)` (or `(rows,)`): rows
            with weight 0 (padded steps) do not count.

    Returns:
        Tensor `(features, features)`.
    """
    reduce = all_reduce or (lambda tensor: tensor)
    rows = tf.reshape(x, (-1, tf.shape(x)[-1]))
    if weights is None:
        count = reduce(tf.cast(tf.shape(rows)[0], rows.dtype))
        rows = rows - reduce(tf.reduce_sum(rows, axis=0, keepdims=True)) / count
    else:
        w = tf.reshape(tf.cast(weights, rows.dtype), (-1, 1))
        count = reduce(tf.reduce_sum(w))
        rows = (rows - reduce(tf.reduce_sum(rows * w, axis=0, keepdims=True)) / count) * w
    cross = reduce(tf.matmul(rows, rows, transpose_a=True))
    # Clamping the squared norm keeps the sqrt's gradient finite at zero.
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(cross), epsilon**2))
    return cross / (norms[:, None] * norms[None, :])


def correlation_loss(fake, target, all_reduce=None, weights=None):
    """Mean absolute difference between the fake batch's pooled correlation and `target`."""
    correlation = pooled_correlation(fake, all_reduce=all_reduce, weights=weights)
    return tf.reduce_mean(tf.abs(correlation - target))
