"""Conditioning the generator on a patient's static attributes.

A conditional generator takes, beside its noise, the one-hot codes of the
patient's static discrete attributes (e.g. Gender and Ethnic). The condition
is appended to the noise at every step, and the generator's output for those
columns is the condition itself, so a synthetic patient has exactly the
attributes asked for (``sample --where``) and keeps them at every step.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hg_keras")
class AppendCondition(keras.layers.Layer):
    """``[sequence, condition]`` -> the sequence with the condition appended at every step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        sequence, condition = inputs
        steps = ops.shape(sequence)[1]
        repeated = ops.repeat(ops.expand_dims(condition, 1), steps, axis=1)
        return ops.concatenate([sequence, ops.cast(repeated, sequence.dtype)], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[0]

    def compute_output_shape(self, input_shapes):
        sequence, condition = input_shapes
        return (*sequence[:-1], sequence[-1] + condition[-1])


@keras.saving.register_keras_serializable(package="hg_keras")
class ImposeCondition(keras.layers.Layer):
    """Overwrites the given encoded columns with the condition, at every step.

    Args:
        columns: list of int, the encoded columns the condition fills, in order.
        width: int, total number of encoded columns.
    """

    def __init__(self, columns, width, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.columns = [int(c) for c in columns]
        self.width = int(width)

    def call(self, inputs):
        sequence, condition = inputs
        placement = [[1.0 if c == column else 0.0 for c in range(self.width)]
                     for column in self.columns]  # fmt: skip
        placement = ops.convert_to_tensor(placement, dtype=sequence.dtype)
        kept = 1.0 - ops.sum(placement, axis=0)
        imposed = ops.matmul(ops.cast(condition, sequence.dtype), placement)
        return sequence * kept + ops.expand_dims(imposed, 1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[0]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "columns": self.columns, "width": self.width}
