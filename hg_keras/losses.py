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


def group_loss(fake, real, numeric_width, static_blocks, dynamic_blocks, weights=None):
    """How differently two batches' demographic groups are, per time-varying variable.

    A conditional generator is given each real patient's static levels, so a
    group (say, Caucasians) has as many patients in the fake batch as in the
    real one; the pooled marginals can match while one group's CD4 sits far
    above the real group's and another's below (issue 13): a classifier that
    sees Ethnic and CD4 together then tells synthetic patients apart. Per
    static level and time-varying variable, this compares the group's mean
    over its patients and months: for a numeric the absolute difference of
    the means, for a discrete block the total variation distance of the
    level shares. Each level weighs by its share of the real batch (an
    absent level not at all), the static variables equally, the
    time-varying variables equally.

    Args:
        fake, real: tensors `(batch, time, width)`, numerics first; a
            patient's static levels are read at month 0, each batch's own.
        numeric_width: int.
        static_blocks, dynamic_blocks: lists of `(start, end)` of the static
            and the time-varying discrete blocks.
        weights: optional 0/1 tensor `(batch, time)` shared by both.

    Returns:
        Scalar tensor.
    """
    if not static_blocks or not (numeric_width or dynamic_blocks):
        return tf.constant(0.0, fake.dtype)
    static = [c for s, e in static_blocks for c in range(s, e)]

    def group_means(x):
        w = _step_weights(x, weights)
        months = tf.maximum(tf.reduce_sum(w, axis=1), 1.0)
        patient = tf.reduce_sum(x * w, axis=1) / months  # (batch, width)
        members = tf.gather(x[:, 0], static, axis=-1)  # (batch, levels)
        count = tf.reduce_sum(members, axis=0)  # (levels,)
        return tf.einsum("pl,pw->lw", members, patient) / tf.maximum(count, 1e-6)[:, None]

    gap = tf.abs(group_means(fake) - group_means(real))  # (levels, width)
    per_variable = [gap[:, :numeric_width]] if numeric_width else []
    per_variable += [
        0.5 * tf.reduce_sum(gap[:, s:e], axis=1, keepdims=True) for s, e in dynamic_blocks
    ]
    per_variable = tf.reduce_mean(tf.concat(per_variable, axis=1), axis=1)  # (levels,)
    real_members = tf.gather(real[:, 0], static, axis=-1)
    share = tf.reduce_sum(real_members, axis=0) / tf.cast(tf.shape(real)[0], real.dtype)
    return tf.reduce_sum(share * per_variable) / len(static_blocks)


def linear_slopes(x, weights=None):
    """Each patient's least-squares slope of each column over its steps: `(batch, columns)`."""
    w = _step_weights(x, weights)
    count = tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1.0)
    steps = tf.cast(tf.range(tf.shape(x)[1]), x.dtype)[None, :, None]
    time = (steps - tf.reduce_sum(steps * w, axis=1, keepdims=True) / count) * w
    centred = (x - tf.reduce_sum(x * w, axis=1, keepdims=True) / count) * w
    spread = tf.maximum(tf.reduce_sum(tf.square(time), axis=1), 1e-8)
    return tf.reduce_sum(time * centred, axis=1) / spread


def trend_loss(fake, real, numeric_width, weights=None, sharpness=10.0):
    """How differently two batches' numerics trend together within a patient.

    The evaluation's trend correlation of two numerics is the Fisher mean,
    over patients, of the Pearson r of their linear trends, and two straight
    lines correlate at +1 or -1: the sign of the product of their slopes.
    The metric so grades the share of patients whose two slopes agree in
    sign, through ``tanh(7.25 (2 q - 1))``, which no smooth loss on the
    numerics reaches. This compares that share directly: per pair, the mean
    over patients of ``sign(slope_a) sign(slope_b)`` of the real batch
    against the generated one's soft version, ``tanh(sharpness * slope /
    s)`` with `s` the real slopes' spread, as a mean absolute difference
    over the pairs.

    Args:
        fake, real: tensors `(batch, time, width)`.
        numeric_width: int, the numerics are the first columns.
        weights: optional 0/1 tensor `(batch, time)` shared by both.
        sharpness: float, how close the soft sign is to the sign.
    """
    if numeric_width < 2:
        return tf.constant(0.0)
    real_slopes = linear_slopes(real[..., :numeric_width], weights)
    fake_slopes = linear_slopes(fake[..., :numeric_width], weights)
    spread = tf.stop_gradient(tf.math.reduce_std(real_slopes, axis=0)) + 1e-6
    signs = [tf.tanh(sharpness * fake_slopes / spread), tf.sign(real_slopes)]
    agreement = [tf.einsum("pa,pb->ab", s, s) / tf.cast(tf.shape(s)[0], s.dtype) for s in signs]
    off_diagonal = 1.0 - tf.eye(numeric_width, dtype=fake.dtype)
    gap = tf.abs(agreement[0] - tf.stop_gradient(agreement[1])) * off_diagonal
    return tf.reduce_sum(gap) / tf.reduce_sum(off_diagonal)


def _step_weights(x, weights):
    """`(batch, time, 1)` float weights: ones, or the given 0/1 mask."""
    if weights is None:
        return tf.ones_like(x[..., :1])
    return tf.cast(weights, x.dtype)[..., None]


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
    w = _step_weights(x, weights)
    count = tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1.0)
    centred = (x - tf.reduce_sum(x * w, axis=1, keepdims=True) / count) * w
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


def marginal_loss(fake, real, numeric_width, blocks, weights=None):
    """How far the fake batch's marginals are from the real batch's, per variable.

    Numerics: the 1-D Wasserstein-1 distance between the two batches'
    pooled values of each column, i.e. the mean absolute difference of their
    sorted values (the batches have the same size). Discrete blocks: the
    total variation distance between the level shares (mean probability
    against the real one-hot mean). The mean over variables, so a block of
    six levels weighs as much as one numeric column. Computed against the
    real batch of the same step, so it needs no target and holds for every
    curriculum length.

    Args:
        fake, real: tensors `(batch, time, width)`, numerics first.
        numeric_width: int.
        blocks: list of `(start, end)` of the discrete blocks.
        weights: optional 0/1 tensor `(batch, time)` shared by both.

    Returns:
        Scalar tensor.
    """
    terms = []
    if numeric_width:
        difference = sorted_values(fake[..., :numeric_width], weights) - sorted_values(
            real[..., :numeric_width], weights
        )
        terms.append(tf.reduce_mean(tf.abs(difference), axis=0))
    if blocks:
        w = _step_weights(fake, weights)
        count = tf.maximum(tf.reduce_sum(w), 1.0)
        shares = [tf.reduce_sum(t * w, axis=[0, 1]) / count for t in (fake, real)]
        gap = tf.abs(shares[0] - shares[1])
        terms.append(tf.stack([0.5 * tf.reduce_sum(gap[s:e]) for s, e in blocks]))
    return tf.reduce_mean(tf.concat(terms, axis=0))


def summary_loss(fake, real, numeric_width, weights=None):
    """How differently the two batches' patients are spread, numeric by numeric.

    Per numeric column, each patient's own mean, minimum and maximum over
    its steps; per statistic, the 1-D Wasserstein-1 distance between the
    two batches' patients (mean absolute difference of the sorted values);
    the mean over statistics and columns. A pooled marginal hardly weighs a
    rare kind of patient whose values are extreme for a few months (a viral
    rebound is ~2 % of the months but ~half of the patients' maxima); a
    classifier of whole patients finds its absence at once.

    Args:
        fake, real: tensors `(batch, time, width)`, numerics first.
        numeric_width: int.
        weights: optional 0/1 tensor `(batch, time)` shared by both; a
            patient's statistics cover its valid steps.
    """
    if not numeric_width:
        return tf.constant(0.0)

    def summaries(x):
        x = x[..., :numeric_width]
        w = _step_weights(x, weights)
        count = tf.maximum(tf.reduce_sum(w, axis=1), 1.0)
        valid = w > 0
        # Padded steps can never be a patient's extreme; a patient without valid steps gets -1.
        high = tf.reduce_max(tf.where(valid, x, -tf.ones_like(x) * 1e9), axis=1)
        low = tf.reduce_min(tf.where(valid, x, tf.ones_like(x) * 1e9), axis=1)
        empty = tf.reduce_sum(w, axis=1) == 0
        stats = [tf.reduce_sum(x * w, axis=1) / count, low, high]
        return tf.stack([tf.where(empty, -tf.ones_like(s), s) for s in stats], axis=1)

    difference = tf.sort(summaries(fake), axis=0) - tf.sort(summaries(real), axis=0)
    return tf.reduce_mean(tf.abs(difference))


def increment_loss(fake, real, numeric_width, weights=None):
    """How far the distributions of the numerics' month-to-month changes differ.

    Per numeric column, the 1-D Wasserstein-1 distance between the two
    batches' pooled first differences ``x[t+1] - x[t]`` (mean absolute
    difference of their sorted values), averaged over columns. Marginals
    and autocorrelations can both match while the changes do not: a smooth
    series around a patient-level mean and a series of small noise plus
    rare large jumps (a viral rebound) share both, and a recurrent
    classifier tells them apart at once.

    Args:
        fake, real: tensors `(batch, time, width)`, numerics first.
        numeric_width: int.
        weights: optional 0/1 tensor `(batch, time)` shared by both; only
            changes between two real steps count.

    Returns:
        Scalar tensor.
    """
    pair_weights = None if weights is None else weights[:, 1:] * weights[:, :-1]
    changes = [t[:, 1:, :numeric_width] - t[:, :-1, :numeric_width] for t in (fake, real)]
    difference = sorted_values(changes[0], pair_weights) - sorted_values(changes[1], pair_weights)
    return tf.reduce_mean(tf.abs(difference))


def profile_loss(fake, real, weights=None):
    """How far the generated month-by-month means are from the real ones.

    Mean absolute gap over months and encoded columns.

    The marginal loss pools months, so a generator may put a month's events
    in the wrong months: in the default run a drug-missing flag came 3.5x too
    often in the last two months (its bidirectional LSTM sees the end), and
    that alone let a recurrent classifier tell synthetic patients apart
    (discriminative score 0.48, 0.18 with that column hidden). Comparing each
    month's mean of every encoded column (numerics and level shares) against
    the real one puts the time profile under a direct gradient.

    Args:
        fake: tensor `(batch, time, width)`.
        real: the real batch `(batch, time, width)`, or the real month means
            `(time', width)` with `time' >= time`
            (:func:`hg_keras.data.pipeline.month_profile` of the whole
            training cohort; the first `time` months are used).
        weights: optional 0/1 tensor `(batch, time)` shared by `fake` and a
            real batch; a month's mean runs over the patients present in it,
            and a month no patient of `fake` reaches does not count.

    Returns:
        Scalar tensor.
    """
    w = _step_weights(fake, weights)
    count = tf.reduce_sum(w, axis=0)  # (time, 1)
    present = tf.cast(count > 0, fake.dtype)

    def means(x):
        return tf.reduce_sum(x * w, axis=0) / tf.maximum(count, 1.0)

    if real.shape.rank == 2:
        target = tf.cast(real[: tf.shape(fake)[1]], fake.dtype)
    else:
        target = means(real)
    gap = tf.reduce_mean(tf.abs(means(fake) - target), axis=-1, keepdims=True)
    return tf.reduce_sum(gap * present) / tf.maximum(tf.reduce_sum(present), 1.0)


def level_entropy(x, blocks, block_weights, weights=None):
    """Weighted mean normalised entropy of discrete blocks: 0 one-hot, 1 uniform.

    Per block, ``-sum_k p_k log p_k / log K`` averaged over patients and
    months, then averaged over blocks with `block_weights`. As a loss it
    asks the generator to decide a patient's level instead of hedging: a
    hedged regimen (say 0.5 / 0.3 / 0.2) is drawn block by block with
    independent uniforms, which pairs drugs that never go together, while
    the level shares stay those of the marginal loss either way (the mean
    of confident rows is the share of patients on each level).

    Args:
        x: tensor `(batch, time, width)` of probabilities.
        blocks: list of `(start, end)`.
        block_weights: list of floats, one per block (e.g. ``1 - renewal``:
            persistent variables decided, month-by-month events left free).
        weights: optional 0/1 tensor `(batch, time)`.

    Returns:
        Scalar tensor.
    """
    w = _step_weights(x, weights)
    count = tf.maximum(tf.reduce_sum(w), 1.0)
    terms = []
    for start, end in blocks:
        p = x[..., start:end]
        entropy = -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-12)), axis=-1, keepdims=True)
        normaliser = tf.math.log(tf.cast(max(end - start, 2), x.dtype))
        terms.append(tf.reduce_sum(entropy * w) / count / normaliser)
    block_weights = tf.constant(block_weights, x.dtype)
    return tf.reduce_sum(tf.stack(terms) * block_weights) / tf.maximum(
        tf.reduce_sum(block_weights), 1e-12
    )


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
    w = _step_weights(x, weights)
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
    w = _step_weights(x, weights)
    count = tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1.0)
    centred = (x - tf.reduce_sum(x * w, axis=1, keepdims=True) / count) * w
    cross = tf.einsum("bta,btc->bac", centred, centred)
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(cross), 1e-8))
    return tf.reduce_mean(cross / (norms[:, :, None] * norms[:, None, :]), axis=0)


def temporal_loss(fake, real, numeric_width, blocks, renewal=None, max_lag=6, weights=None):
    """How far two batches' month-to-month behaviour differs.

    The mean of: the mean absolute difference of the numerics'
    autocorrelations (lags 1..`max_lag`), of their within-patient
    correlations (:func:`within_patient_correlation`) of levels and of
    month-to-month changes (how they move together over the longer run and
    from one month to the next: Health Gym's trends and cycles), and of the relative
    switch rates of the time-varying discrete blocks (:func:`switch_rates`,
    divided by the real rate floored at 1 %, since switches are rare and an
    absolute gap would barely register).

    Args:
        fake, real: tensors `(batch, time, width)`.
        numeric_width: int.
        blocks: list of `(start, end)` of the time-varying discrete blocks.
        renewal: list of renewal rates per block, as the sampler draws them.
        max_lag: int, lags compared (lags past the batch's length compare 0 with 0).
        weights: optional 0/1 tensor `(batch, time)` shared by both.
    """
    terms = []
    if numeric_width:
        numeric = [t[..., :numeric_width] for t in (fake, real)]
        acf = [autocorrelation(t, max_lag, weights) for t in numeric]
        terms.append(tf.reduce_mean(tf.abs(acf[0] - acf[1])))
        if numeric_width > 1:
            within = [within_patient_correlation(t, weights) for t in numeric]
            terms.append(tf.reduce_mean(tf.abs(within[0] - within[1])))
            pair_weights = None if weights is None else weights[:, 1:] * weights[:, :-1]
            changes = [
                within_patient_correlation(t[:, 1:] - t[:, :-1], pair_weights) for t in numeric
            ]
            terms.append(tf.reduce_mean(tf.abs(changes[0] - changes[1])))
    if blocks:
        rates = [switch_rates(t, blocks, renewal, weights) for t in (fake, real)]
        rates[1] = tf.stop_gradient(rates[1])
        relative = tf.abs(rates[0] - rates[1]) / tf.maximum(rates[1], 0.01)
        terms.append(tf.reduce_mean(relative) * 0.1)
    if not terms:
        return tf.constant(0.0)
    return tf.add_n(terms) / len(terms)
