"""The generator's alignment terms: statistics of the real batch it is pulled towards.

Health Gym v1 adds one term to the Wasserstein generator loss, the L1 gap
between the pooled correlation matrices of generated and real data. Each
further term here compares another statistic the critic is slow to find
(marginals, month-to-month dynamics, decided regimens, trends). A term is a
small callable object with a `name` and ``__call__(real, fake, valid)``;
the generator minimises

    -mean D(fake) + sum(weight * term(real, fake, valid))

over the terms listed with their weights in ``training.alignment`` (v1:
``{correlation: 10}``). A term of your own needs no change elsewhere:
subclass :class:`AlignmentTerm`, decorate it with :func:`register` and name
it in the config.

Every term sees batches `(batch, time, width)` in the encoded layout
(numerics first, then one-hot blocks), the generator's soft output as
`fake`, and `valid`, a bool `(batch, time)` mask of real steps or None.
"""

import dataclasses
import math

import tensorflow as tf

from hg_keras.errors import InputError
from hg_keras.losses import (
    autocorrelation,
    correlation_loss,
    linear_slopes,
    sorted_values,
    step_weights,
    switch_rates,
    within_patient_correlation,
)

TERMS = {}


def register(cls):
    """Class decorator: makes an :class:`AlignmentTerm` nameable in ``training.alignment``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    TERMS[cls.name] = cls
    return cls


@dataclasses.dataclass(frozen=True)
class Encoding:
    """What a term knows of the cohort: its encoded layout and cohort-wide targets.

    Args:
        numeric_width: int, the numerics are the first columns.
        blocks: tuple of `(start, end)` of every discrete block.
        dynamic_blocks: tuple of `(start, end)` of the time-varying ones.
        renewal: tuple of the sampler's renewal rates, one per time-varying
            block (:func:`hg_keras.noise.draw_levels`), or None (argmax
            output: switches are total variations between months).
        correlation_target: array `(width, width)`, the training cohort's
            pooled Pearson matrix, or None.
        released: :class:`hg_keras.privacy.ReleasedMarginals` or None: in a
            private run, the marginal terms align with these noised cohort
            marginals instead of the real batch's (fixed lengths only).
    """

    numeric_width: int = 0
    blocks: tuple = ()
    dynamic_blocks: tuple = ()
    renewal: tuple | None = None
    correlation_target: object = None
    released: object = None


class AlignmentTerm:
    """Base of the alignment terms: `name`, built from an :class:`Encoding`."""

    name = ""

    def __init__(self, encoding):
        self.encoding = encoding

    def __call__(self, real, fake, valid=None):
        raise NotImplementedError

    def numeric_gap(self, real, fake, valid):
        """The numerics' sorted fake values minus the real batch's, or minus the
        released quantile function at the same levels: `(rows, numeric_width)`."""
        width = self.encoding.numeric_width
        fake = sorted_values(fake[..., :width], valid)
        if self.encoding.released is None:
            return fake - sorted_values(real[..., :width], valid)
        return fake - released_quantiles(self.encoding.released.quantiles(), tf.shape(fake)[0])

    def real_shares(self, real, valid):
        """Every discrete column's share of the real steps, or the released shares."""
        if self.encoding.released is not None:
            return tf.constant(self.encoding.released.shares(real.shape[-1]), real.dtype)
        w = step_weights(real, valid)
        return tf.reduce_sum(real * w, axis=[0, 1]) / tf.maximum(tf.reduce_sum(w), 1.0)


@register
class Correlation(AlignmentTerm):
    """Mean absolute gap between the batch's pooled Pearson matrix and the cohort's.

    Health Gym v1's generator term (Kuo et al. 2022,
    doi:10.1038/s41597-022-01784-7): the correlation over batch and time of
    every encoded column, against the training cohort's. Under a
    distribution strategy the matrix is that of the global batch (its
    moments are summed over the replicas), so every replica aligns the same
    matrix.
    """

    name = "correlation"

    def __call__(self, real, fake, valid=None):
        context = tf.distribute.get_replica_context()
        all_reduce = None
        if context is not None and context.num_replicas_in_sync > 1:
            all_reduce = lambda tensor: context.all_reduce("sum", tensor)  # noqa: E731
        target = tf.cast(self.encoding.correlation_target, fake.dtype)
        return correlation_loss(fake, target, all_reduce=all_reduce, weights=valid)


@register
class Marginal(AlignmentTerm):
    """How far the batch's marginals are from the real batch's, variable by variable.

    Numerics: the 1-D Wasserstein-1 distance of the pooled values (the mean
    absolute gap of the sorted values; both batches have one size). Discrete
    blocks: the total variation distance of the level shares. The mean over
    variables, so a six-level block weighs as much as one numeric. The
    pooled marginal is what the evaluation's KS and TVD grade (sdmetrics
    KSComplement, TVComplement).
    """

    name = "marginal"

    def __call__(self, real, fake, valid=None):
        width, blocks = self.encoding.numeric_width, self.encoding.blocks
        terms = []
        if width:
            terms.append(tf.reduce_mean(tf.abs(self.numeric_gap(real, fake, valid)), axis=0))
        if blocks:
            w = step_weights(fake, valid)
            shares = tf.reduce_sum(fake * w, axis=[0, 1]) / tf.maximum(tf.reduce_sum(w), 1.0)
            gap = tf.abs(shares - self.real_shares(real, valid))
            terms.append(tf.stack([0.5 * tf.reduce_sum(gap[s:e]) for s, e in blocks]))
        if not terms:
            return tf.constant(0.0, fake.dtype)
        return tf.reduce_mean(tf.concat(terms, axis=0))


@register
class Tails(AlignmentTerm):
    """The numerics' marginal gap weighted toward both tails.

    The gap of the sorted pooled values (as in :class:`Marginal`), each
    quantile `q` weighted by ``1 / (pi * sqrt(q (1 - q)))``, whose mean over
    [0, 1] is 1: the square-root form of the Anderson-Darling weight
    (Anderson and Darling 1952, doi:10.1214/aoms/1177729437). A plain
    Wasserstein-1 gap gives the top 5 % of values 5 % of its weight, so a
    generator that never makes the rare large values (a viral-load
    episode, months on a capped maximum) loses little by it; here the
    extreme quantiles weigh about ``sqrt(n)`` times the median. The mean
    over numerics; quantiles count real steps only.
    """

    name = "tails"

    def __call__(self, real, fake, valid=None):
        width = self.encoding.numeric_width
        if not width:
            return tf.constant(0.0, fake.dtype)
        gap = tf.abs(self.numeric_gap(real, fake, valid))
        rows = tf.cast(tf.shape(gap)[0], fake.dtype)
        count = tf.maximum(tf.reduce_sum(step_weights(fake[..., :1], valid)), 1.0)
        # Padded steps sort first (and cancel): quantiles start after them.
        q = (tf.range(rows, dtype=fake.dtype) - (rows - count) + 0.5) / count
        q = tf.clip_by_value(q, 0.5 / count, 1.0 - 0.5 / count)
        weight = 1.0 / (math.pi * tf.sqrt(q * (1.0 - q)))
        return tf.reduce_mean(tf.reduce_sum(gap * weight[:, None], axis=0) / count)


@register
class Temporal(AlignmentTerm):
    """How far the batch's month-to-month behaviour is from the real batch's.

    The mean of: the gap of the numerics' autocorrelations (lags 1 to
    `max_lag`, TimeGAN's and tsgm's temporal statistic), and of their
    month-to-month changes' (a smooth series whose changes run on for
    months and one of independent steps can share the first); the gaps of their
    within-patient correlations of levels and of month-to-month changes
    (Health Gym's trends and cycles); and the relative gap of the
    time-varying discrete blocks' switch rates as the sampler will draw
    them (:func:`hg_keras.losses.switch_rates`, over the real rate floored
    at 1 %, times 0.1: switches are rare). An autocorrelation over fewer than
    three steps is a constant and is left out of the mean (a cohort of three
    visits has two changes).
    """

    name = "temporal"
    max_lag = 6

    def __call__(self, real, fake, valid=None):
        width = self.encoding.numeric_width
        blocks = self.encoding.dynamic_blocks
        terms, counts = [], []
        if width:
            numeric = [t[..., :width] for t in (fake, real)]
            changes = [t[:, 1:] - t[:, :-1] for t in numeric]
            parts = ((numeric, valid), (changes, _pair_weights(valid)))
            for series, weights in parts:
                # Two steps about their mean always correlate -0.5: such a part
                # counts for nothing (the time length is only known at run time).
                counts.append(tf.cast(tf.shape(series[0])[1] > 2, fake.dtype))
                acf = [autocorrelation(t, self.max_lag, weights) for t in series]
                terms.append(counts[-1] * tf.reduce_mean(tf.abs(acf[0] - acf[1])))
            if width > 1:
                for series, weights in parts:
                    within = [within_patient_correlation(t, weights) for t in series]
                    terms.append(tf.reduce_mean(tf.abs(within[0] - within[1])))
                    counts.append(tf.constant(1.0, fake.dtype))
        if blocks:
            renewal = self.encoding.renewal
            rates = [switch_rates(t, blocks, renewal, valid) for t in (fake, real)]
            rates[1] = tf.stop_gradient(rates[1])
            relative = tf.abs(rates[0] - rates[1]) / tf.maximum(rates[1], 0.01)
            terms.append(tf.reduce_mean(relative) * 0.1)
            counts.append(tf.constant(1.0, fake.dtype))
        if not terms:
            return tf.constant(0.0, fake.dtype)
        return tf.add_n(terms) / tf.maximum(tf.add_n(counts), 1.0)


@register
class Increment(AlignmentTerm):
    """Wasserstein-1 between the numerics' month-to-month changes, column by column.

    Marginals and autocorrelations can both match while the changes do not:
    a smooth series and one of small noise with rare jumps share both, and
    a recurrent classifier tells them apart at once (sdmetrics'
    InterRowMSAS grades the same differences). Only changes between two real
    steps count.
    """

    name = "increment"

    def __call__(self, real, fake, valid=None):
        width = self.encoding.numeric_width
        if not width:
            return tf.constant(0.0, fake.dtype)
        pairs = _pair_weights(valid)
        changes = [t[:, 1:, :width] - t[:, :-1, :width] for t in (fake, real)]
        gap = sorted_values(changes[0], pairs) - sorted_values(changes[1], pairs)
        return tf.reduce_mean(tf.abs(gap))


@register
class Confidence(AlignmentTerm):
    """Normalised entropy of persistent discrete variables: 0 one-hot, 1 uniform.

    Each time-varying block weighs ``1 - renewal``: a persistent variable
    such as a regimen is decided, while month-by-month events keep their
    probabilities. A hedged regimen (0.5 / 0.3 / 0.2) would be drawn drug
    by drug and pair drugs that never go together; the level shares stay
    the marginal term's either way. Reads no real data.
    """

    name = "confidence"

    def __call__(self, real, fake, valid=None):
        blocks = self.encoding.dynamic_blocks
        if not blocks:
            return tf.constant(0.0, fake.dtype)
        renewal = self.encoding.renewal or (0.0,) * len(blocks)
        persistence = tf.constant([1.0 - r for r in renewal], fake.dtype)
        w = step_weights(fake, valid)
        count = tf.maximum(tf.reduce_sum(w), 1.0)
        entropies = []
        for start, end in blocks:
            p = fake[..., start:end]
            entropy = -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-12)), -1, keepdims=True)
            levels = tf.math.log(tf.cast(max(end - start, 2), fake.dtype))
            entropies.append(tf.reduce_sum(entropy * w) / count / levels)
        return tf.reduce_sum(tf.stack(entropies) * persistence) / tf.maximum(
            tf.reduce_sum(persistence), 1e-12
        )


@register
class Trend(AlignmentTerm):
    """Gap in the share of patients whose two numerics' linear trends agree in sign.

    The evaluation's trend correlation (Health Gym's) of two numerics is the
    Fisher mean over patients of the Pearson r of their linear trends, and
    two straight lines correlate at +1 or -1: the metric grades the share of
    agreeing signs, which no smooth loss on the values reaches. Per pair,
    the real batch's mean of ``sign(slope_a) sign(slope_b)`` against the
    generated one's soft version ``tanh(sharpness * slope / s)`` (`s`, the
    real slopes' spread), as a mean absolute gap over the pairs.
    """

    name = "trend"
    sharpness = 10.0

    def __call__(self, real, fake, valid=None):
        width = self.encoding.numeric_width
        if width < 2:
            return tf.constant(0.0, fake.dtype)
        real_slopes = linear_slopes(real[..., :width], valid)
        fake_slopes = linear_slopes(fake[..., :width], valid)
        spread = tf.stop_gradient(tf.math.reduce_std(real_slopes, axis=0)) + 1e-6
        signs = [tf.tanh(self.sharpness * fake_slopes / spread), tf.sign(real_slopes)]
        patients = tf.cast(tf.shape(real_slopes)[0], fake.dtype)
        agreement = [tf.einsum("pa,pb->ab", s, s) / patients for s in signs]
        off_diagonal = 1.0 - tf.eye(width, dtype=fake.dtype)
        gap = tf.abs(agreement[0] - tf.stop_gradient(agreement[1])) * off_diagonal
        return tf.reduce_sum(gap) / tf.reduce_sum(off_diagonal)


def released_quantiles(table, rows):
    """`table`'s quantile function `(levels, columns)`, interpolated linearly at
    the `rows` plotting positions ``(i + 0.5) / rows``: `(rows, columns)`."""
    table = tf.constant(table)
    levels = tf.cast(tf.shape(table)[0] - 1, table.dtype)
    position = (tf.range(tf.cast(rows, table.dtype)) + 0.5) / tf.cast(rows, table.dtype) * levels
    low = tf.floor(position)
    fraction = (position - low)[:, None]
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, tf.shape(table)[0] - 1)
    return tf.gather(table, low) * (1.0 - fraction) + tf.gather(table, high) * fraction


def _pair_weights(valid):
    """Transitions between two real steps, `(batch, time - 1)`, or None."""
    if valid is None:
        return None
    valid = tf.cast(valid, tf.float32)
    return valid[:, 1:] * valid[:, :-1]


def build_terms(weights, encoding, where="training.alignment"):
    """`[(term, weight), ...]` for a ``{name: weight}`` mapping, zero weights left out.

    Raises:
        InputError: an unknown name (the known ones listed) or a negative weight.
    """
    terms = []
    for name, weight in weights.items():
        check_term(name, weight, where)
        if weight:
            terms.append((TERMS[name](encoding), float(weight)))
    return terms


def check_term(name, weight, where="training.alignment"):
    """Raises InputError unless `name` is a registered term and `weight` a number >= 0."""
    if name not in TERMS:
        raise InputError(f"{where}: unknown term '{name}'; expected one of {', '.join(TERMS)}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise InputError(f"{where}: {name} must be a number, zero or positive, got '{weight}'")
