"""The critic's score read from both its final states and every month."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hg_keras")
class SequenceScore(keras.layers.Layer):
    """Score = Dense(final states) + mean over months of Dense(month features).

    v1's critic scores a patient from the final states of its biLSTM only;
    the per-month term adds a score at every month, which gives the
    generator a gradient at every month instead of through 60 steps of
    recurrence. The final states are read off the bidirectional sequence:
    the forward half at the last real month, the backward half at month 0.

    Args:
        units: int, width of each direction.

    Input shape: `(batch, time, 2 * units)`, optional mask `(batch, time)`.
    Output shape: `(batch, 1)`.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.units = units
        self.final = keras.layers.Dense(1, name="final")
        self.steps = keras.layers.Dense(1, name="steps")

    def build(self, input_shape):
        self.final.build((input_shape[0], input_shape[-1]))
        self.steps.build(input_shape)

    def call(self, inputs, mask=None):
        if mask is None:
            weights = ops.ones_like(inputs[..., :1])
        else:
            weights = ops.cast(mask, inputs.dtype)[..., None]
        count = ops.sum(weights, axis=1)  # (batch, 1)
        last = ops.cast(count[:, 0], "int32") - 1
        forward = ops.take_along_axis(
            inputs[..., : self.units], ops.reshape(last, (-1, 1, 1)), axis=1
        )[:, 0]
        final = ops.concatenate([forward, inputs[:, 0, self.units :]], axis=-1)
        per_month = ops.sum(self.steps(inputs) * weights, axis=1) / ops.maximum(count, 1.0)
        return self.final(final) + per_month

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
