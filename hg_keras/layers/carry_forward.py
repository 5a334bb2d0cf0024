"""Last observation carried forward: values that repeat under a missingness flag."""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="hg_keras")
class CarryForward(keras.Layer):
    """Makes a variable repeat its previous step wherever its flag says carried.

    Cohorts imputed by last observation carried forward hold an exact rule:
    in ART for HIV, a month with ``VL (M)`` set repeats the previous month's
    viral load. A generator left to learn that rule gets it approximately
    at best (0.4 % of flagged synthetic months repeated exactly, against
    100 % of real ones), which a classifier sees. This layer imposes it::

        y[0] = x[0]
        y[t] = p[t] * y[t - 1] + (1 - p[t]) * x[t]

    where `p[t]` is the flag level's probability (training: soft, so the
    gradient reaches the flag and the values) or, with ``hard=True``, 1 where
    it is over one half (sampling, after levels are drawn). A flag modelled
    inside a compound variable (:mod:`hg_keras.data.compound`) has several
    columns, the compound levels holding it; `p` is their sum. Month 0 has
    nothing to carry and keeps its value.

    Args:
        carried: list of `[start, end, *flag columns]`
            (:attr:`hg_keras.data.transforms.FeatureLayout.carried`): the
            encoded columns of a carried variable and the one-hot columns
            of its flag's carrying level.
        hard: bool, carry exactly where the flag is drawn (True) or by its
            probability (False).

    Input and output shape: `(batch, time, width)`.
    """

    def __init__(self, carried, hard=False, **kwargs):
        super().__init__(**kwargs)
        # Padded steps only follow a patient's last month; the padding mask passes through.
        self.supports_masking = True
        self.carried = [[int(c) for c in entry] for entry in carried]
        for entry in self.carried:
            start, end, *flags = entry
            if not flags or not 0 <= start < end or any(start <= f < end for f in flags):
                raise ValueError(f"carried entry {entry} is not [start, end, *flag columns]")
        self.hard = hard

    def call(self, inputs):
        if not self.carried:
            return inputs
        width = ops.shape(inputs)[-1]
        columns = ops.arange(width)
        # Per column: the probability that it is carried (0 for columns no flag governs).
        carry = ops.zeros_like(inputs)
        for start, end, *flags in self.carried:
            p = ops.sum(ops.take(inputs, flags, axis=-1), axis=-1, keepdims=True)
            if self.hard:
                p = ops.cast(p > 0.5, inputs.dtype)
            governed = ops.cast((columns >= start) & (columns < end), inputs.dtype)
            carry = carry + p * governed
        first = ops.cast(ops.arange(ops.shape(inputs)[1]) == 0, inputs.dtype)[None, :, None]
        carry = carry * (1.0 - first)

        # Time-major for the scan; the carry starts at zero and month 0's p is 0.
        time_major = (ops.transpose(carry, (1, 0, 2)), ops.transpose(inputs, (1, 0, 2)))
        # tf.scan, not keras.ops.scan: the latter needs a static time length.
        carried = tf.scan(
            lambda previous, month: month[0] * previous + (1.0 - month[0]) * month[1],
            time_major,
            initializer=tf.zeros_like(inputs[:, 0]),
        )
        return ops.transpose(carried, (1, 0, 2))

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "carried": self.carried, "hard": self.hard}
