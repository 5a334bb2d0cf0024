"""WGAN-GP losses, the gradient penalty and the batch statistics the alignment terms compare.

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


def linear_slopes(x, weights=None):
    """Each patient's least-squares slope of each column over its steps: `(batch, columns)`."""
    steps = tf.cast(tf.range(tf.shape(x)[1]), x.dtype)[None, :, None]
    time = centred_per_patient(steps * tf.ones_like(x[..., :1]), weights)
    centred = centred_per_patient(x, weights)
    spread = tf.maximum(tf.reduce_sum(tf.square(time), axis=1), 1e-8)
    return tf.reduce_sum(time * centred, axis=1) / spread


def step_weights(x, weights):
    """`(batch, time, 1)` float weights: ones, or the given 0/1 mask."""
    if weights is None:
        return tf.ones_like(x[..., :1])
    return tf.cast(weights, x.dtype)[..., None]


def centred_per_patient(x, weights=None):
    """`x` `(batch, time, columns)` minus each patient's mean over its valid steps;
    padded steps (weight 0) are 0."""
    w = step_weights(x, weights)
    count = tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1.0)
    return (x - tf.reduce_sum(x * w, axis=1, keepdims=True) / count) * w


def autocorrelation(x, max_lag, weights=None):
    """Mean over patients of each column's lag-1..`max_lag` autocorrelation.

    The evaluation's statistic (:func:`hg_keras.evaluation.fidelity.autocorrelation`)
    in differentiable form: per patient, the series is centred on its own
    mean and ``sum_t c_t c_{t+k} / sum_t c_t^2`` is taken; patients whose
    series is (nearly) constant count with a zero autocorrelation.

    Args:
        x: tensor `(batch, time, columns)`, `time > max_lag`.
        max_lag: int.
        weights: optional 0/1 tensor `(batch, time)`; steps with weight 0
            (padding) are left out of means and lagged products.

    Returns:
        Tensor `(columns, max_lag)`.
    """
    centred = centred_per_patient(x, weights)
    variance = tf.reduce_sum(tf.square(centred), axis=1)  # (batch, columns)
    lags = []
    for lag in range(1, max_lag + 1):
        products = tf.reduce_sum(centred[:, lag:] * centred[:, :-lag], axis=1)
        lags.append(products / tf.maximum(variance, 1e-8))
    return tf.reduce_mean(tf.stack(lags, axis=-1), axis=0)


def sorted_values(x, weights=None):
    """Each column's values over batch and time, sorted: `(rows, columns)`.

    Padded steps (weight 0) are set to -1 on both sides of a comparison, so
    they sort first and cancel when two equally masked batches are compared.
    """
    if weights is not None:
        x = tf.where(tf.cast(weights, tf.bool)[..., None], x, -tf.ones_like(x))
    rows = tf.reshape(x, (-1, tf.shape(x)[-1]))
    return tf.sort(rows, axis=0)


def switch_rates(x, blocks, renewal=None, weights=None):
    """Expected month-to-month change of each discrete block: `(len(blocks),)`.

    For one-hot rows, the share of transitions where the level changes. For
    generated probabilities, the expected switch rate when a level is drawn
    from them with a uniform renewed with probability `r` per month
    (:func:`hg_keras.noise.draw_levels`): ``r * (1 - sum_k p_t p_t+1) +
    (1 - r) * TV(p_t, p_t+1)``: a renewed draw is independent of the last
    month's, a kept one is carried by maximal coupling
    (:func:`hg_keras.noise.draw_blocks`), which switches in exactly the
    total variation.

    Args:
        x: tensor `(batch, time, width)`.
        blocks: list of `(start, end)` column ranges.
        renewal: list of floats per block (default all 0: total variation).
        weights: optional 0/1 tensor `(batch, time)`; only transitions
            between two real steps count.
    """
    renewal = renewal or [0.0] * len(blocks)
    w = step_weights(x, weights)
    pairs = w[:, 1:] * w[:, :-1]
    count = tf.maximum(tf.reduce_sum(pairs), 1.0)
    rates = []
    for (start, end), rate in zip(blocks, renewal):
        block = x[..., start:end]
        now, then = block[:, 1:], block[:, :-1]
        kept = 0.5 * tf.reduce_sum(tf.abs(now - then), axis=-1, keepdims=True)
        renewed = 1.0 - tf.reduce_sum(now * then, axis=-1, keepdims=True)
        change = rate * renewed + (1.0 - rate) * kept
        rates.append(tf.reduce_sum(change * pairs) / count)
    return tf.stack(rates)


def within_patient_correlation(x, weights=None):
    """Mean over patients of the Pearson matrix of their own centred series.

    What the evaluation's trend and cycle correlations measure together: how
    two numerics move together within a patient, as opposed to across
    patients. `(columns, columns)`; a (nearly) constant series counts as 0.
    """
    centred = centred_per_patient(x, weights)
    cross = tf.einsum("bta,btc->bac", centred, centred)
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(cross), 1e-8))
    return tf.reduce_mean(cross / (norms[:, :, None] * norms[:, None, :]), axis=0)
