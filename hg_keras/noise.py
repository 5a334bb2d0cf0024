"""Latent noise, drawn statelessly so a seed fixes it everywhere.

Training, ``sample`` and the exported SavedModel all draw noise here, keyed
by an explicit seed pair instead of a stateful generator: the same seed gives
the same noise in every process, and nothing mutable is saved in a model.
"""

import numpy as np
import tensorflow as tf

# Seed streams: offsets added to the second seed word, one per kind of draw,
# so the draws of one `(seed, chunk)` or training step never share a stream.
# They are part of the "same seed, same patients" promise: changing one
# changes what training, ``sample`` and the SavedModel all draw.
ALPHA_STREAM = 1_000_003  # training: gradient-penalty interpolation weights
GENERATOR_STREAM = 2_000_003  # training: the generator update's noise
LENGTH_STREAM = 3_000_017  # sampling: patient lengths
GROUP_STREAM = 4_000_037  # sampling: static groups
LEVEL_STREAM = 5_000_011  # discrete levels drawn from the generated probabilities
RENEWAL_STREAM = 6_000_023  # when those draws are renewed
KEEP_STREAM = 7_000_003  # whether a level is carried over to the next month


def latent_noise(patients, steps, latent_dim, seed, distribution="uniform"):
    """Stateless latent noise `(patients, steps, latent_dim)`.

    Args:
        seed: int32/int64 tensor or pair of shape (2,).
        distribution: ``uniform`` (v1's U[0, 1)) or ``normal``.
    """
    shape = tf.stack([patients, steps, latent_dim])
    if distribution == "uniform":
        return tf.random.stateless_uniform(shape, seed=seed)
    return tf.random.stateless_normal(shape, seed=seed)


def draw_categories(probabilities, count, seed):
    """`count` stateless draws of indices with the given probabilities (int32 tensor).

    Systematic sampling (Madow 1949): one uniform `u` places `count` evenly
    spaced points ``(u + k) / count`` on the cumulative probabilities, and
    the points are then shuffled. Every index so comes `count * p` times,
    rounded up or down, instead of a multinomial count: a group of 0.3 % is
    drawn 3 times in 1,000 patients, never 0 or 7, so small groups keep
    their share (mode coverage) in every chunk, while each draw still has
    the probability `p` and which patients get which index stays random.

    Used for synthetic patients' lengths and static groups, in ``sample`` and
    in the SavedModel alike, so both draw the same patients for a seed.

    Args:
        probabilities: 1-D array or tensor summing to 1.
        count: int or scalar tensor.
        seed: int64 tensor of shape (2,).
    """
    probabilities = tf.cast(tf.convert_to_tensor(probabilities), tf.float64)
    cumulative = tf.cumsum(probabilities) / tf.reduce_sum(probabilities)
    draws = tf.random.stateless_uniform([count + 1], seed=seed, dtype=tf.float64)
    points = (draws[0] + tf.cast(tf.range(count), tf.float64)) / tf.cast(count, tf.float64)
    picks = tf.searchsorted(cumulative, points, side="right", out_type=tf.int32)
    picks = tf.minimum(picks, tf.size(probabilities, out_type=tf.int32) - 1)
    return tf.gather(picks, tf.argsort(draws[1:]))


def draw_levels(encoded, layout, seed_pair, renewal=None):
    """Replaces each discrete block's probabilities by a one-hot level drawn from them.

    Each patient's level of a block is drawn at month 0, then carried from
    month to month with as few changes as the generated probabilities
    allow (maximal coupling, :func:`draw_blocks`), and drawn afresh at a
    month with the block's renewal probability. Every month's level so
    has the generated probabilities, whatever the renewal rate, and the rate
    only sets how persistent the draws are: 1 draws every month afresh
    (``discrete_output: sample``), 0 keeps one draw for life (static
    blocks), and ``persistent`` uses the training data's rates
    (:func:`hg_keras.data.transforms.renewal_rate`), so a regimen persists
    while a missed visit stays a month's event. ``sample``, the SavedModel
    and training (straight-through draws) all draw here, and so draw the
    same codes for the same seed. (``joint`` draws the same way: its
    compound variables are blocks of the layout; :mod:`hg_keras.data.compound`.)

    Args:
        encoded: float tensor `(patients, steps, features)` from the generator.
        layout: :class:`FeatureLayout`.
        seed_pair: int64 tensor of shape (2,).
        renewal: dict block name -> renewal probability per month for
            time-varying blocks; None renews them every month.
    """
    blocks = layout.discrete_blocks
    rates = [
        0.0 if b.static else (1.0 if renewal is None else renewal.get(b.name, 1.0)) for b in blocks
    ]
    return draw_blocks(encoded, [(b.start, b.end) for b in blocks], rates, seed_pair)


def draw_blocks(encoded, blocks, rates, seed_pair):
    """:func:`draw_levels` on explicit column ranges `blocks` (in column order) with
    renewal `rates`; columns outside them pass through.

    Month 0 draws each block's level from its probabilities. From then on,
    unless renewed (a fresh draw, probability `rate`), a level is carried
    over by the maximal coupling of two months' probabilities `p` and `q`:
    level `k` is kept with probability ``min(1, q_k / p_k)``, and otherwise
    the level is drawn from the rise ``max(q - p, 0)``. Each month's level
    then has exactly the month's generated probabilities, and a kept draw
    changes level in exactly ``TV(p, q)`` of months: the fewest switches any
    draw with those probabilities can make. (Reading one uniform through the
    cumulative probabilities switches more as soon as a block has three or
    more levels: moving mass between two levels moves every level between
    them.)
    """
    if not blocks:
        return encoded
    shape = tf.shape(encoded)
    size = tf.stack([shape[0], shape[1], len(blocks)])
    fresh = tf.random.stateless_uniform(
        size, seed=seed_pair + [0, LEVEL_STREAM], dtype=encoded.dtype
    )
    renew = tf.random.stateless_uniform(size, seed=seed_pair + [0, RENEWAL_STREAM]) < rates
    renew = tf.concat([tf.ones_like(renew[:, :1]), renew[:, 1:]], axis=1)
    kept = tf.random.stateless_uniform(size, seed=seed_pair + [0, KEEP_STREAM], dtype=encoded.dtype)
    # Time-major for the scan over months.
    fresh, renew, kept = (tf.transpose(t, (1, 0, 2)) for t in (fresh, renew, kept))
    parts, cursor = [], 0
    for j, (start, end) in enumerate(blocks):
        parts.append(encoded[..., cursor:start])
        probabilities = tf.maximum(encoded[..., start:end], 0.0)
        probabilities /= tf.maximum(tf.reduce_sum(probabilities, axis=-1, keepdims=True), 1e-12)
        months = tf.transpose(probabilities, (1, 0, 2))
        first = _draw(months[0], fresh[0, :, j])
        steps = (months[1:], months[:-1], fresh[1:, :, j], renew[1:, :, j], kept[1:, :, j])
        rest = tf.scan(_coupled_step, steps, initializer=first)
        levels = tf.concat([first[None], rest], axis=0)
        parts.append(tf.transpose(levels, (1, 0, 2)))
        cursor = end
    parts.append(encoded[..., cursor:])
    return tf.concat(parts, axis=-1)


def net_renewal(probabilities, pairs, switch):
    """The renewal rate at which :func:`draw_blocks` switches a block as often as `switch`.

    A month's kept draw switches in ``TV(p, q)`` of cases (the drift of the
    generated probabilities from `p` to `q`), a renewed one in ``1 - p.q``,
    so a rate `r` switches ``r * mean(1 - p.q) + (1 - r) * mean(TV)`` of
    months. This solves that for the data's share `switch`, clipped to
    [0, 1]: a generator whose probabilities drift as often as the data
    switches gets no renewals at all (0), the fewest switches its
    probabilities allow. (:func:`hg_keras.data.transforms.renewal_rate`
    assumes probabilities that never drift, and so renews too often.)

    Args:
        probabilities: array `(patients, steps, levels)` of one block's generated
            probabilities (normalised here as :func:`draw_blocks` does).
        pairs: bool array `(patients, steps - 1)`: month `t` and `t + 1` are both
            within the patient's length.
        switch: float, the target share of months that change level.

    Returns:
        float in [0, 1].
    """
    p = np.maximum(np.asarray(probabilities, np.float64), 0.0)
    p /= np.maximum(p.sum(axis=-1, keepdims=True), 1e-12)
    pairs = np.asarray(pairs, bool)
    if not pairs.any():
        return 1.0
    before, now = p[:, :-1][pairs], p[:, 1:][pairs]
    drift = 0.5 * np.abs(now - before).sum(axis=-1).mean()
    fresh = 1.0 - (now * before).sum(axis=-1).mean()
    if fresh <= drift:
        return 1.0 if switch > drift else 0.0
    return float(np.clip((switch - drift) / (fresh - drift), 0.0, 1.0))


def _draw(probabilities, uniform):
    """One-hot level of each row: where `uniform` falls in the cumulative `probabilities`."""
    width = tf.shape(probabilities)[-1]
    total = tf.maximum(tf.reduce_sum(probabilities, axis=-1, keepdims=True), 1e-12)
    below = tf.cumsum(probabilities, axis=-1) / total < uniform[:, None]
    index = tf.minimum(tf.reduce_sum(tf.cast(below, tf.int32), axis=-1), width - 1)
    return tf.one_hot(index, width, dtype=probabilities.dtype)


def _coupled_step(previous, step):
    """Next month's one-hot levels: renewed, kept, or moved to where probability rose."""
    now, before, fresh, renew, kept = step
    ratio = now / tf.maximum(before, 1e-12)
    keep = kept < tf.reduce_sum(previous * tf.minimum(ratio, 1.0), axis=-1)
    rise = tf.maximum(now - before, 0.0)
    rise = tf.where(tf.reduce_sum(rise, axis=-1, keepdims=True) > 1e-9, rise, now)
    moved = _draw(rise, fresh)
    carried = tf.where(keep[:, None], previous, moved)
    return tf.where(renew[:, None], _draw(now, fresh), carried)
