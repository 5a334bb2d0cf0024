"""The generator's block-wise output heads."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hg_keras")
class BlockActivation(keras.layers.Layer):
    """Sigmoid on the numeric block, softmax on each discrete block.

    Numerics live in [0, 1] after Box-Cox and min-max, and each discrete
    block becomes a probability vector over its levels, so every generated
    row is a valid point of the encoded space.

    A sigmoid never reaches 0 or 1, and near them its gradient vanishes, so
    a variable with a point mass at a bound (a lab value censored at a
    detection limit, a percentage capped at its maximum) is generated just
    inside it, never on it. With `numeric_margin` m > 0 the numerics are
    ``(1 + 2m) * sigmoid(x) - m`` clipped to [0, 1] ("censored" head): the
    bounds are reached from ``sigmoid(x) = (1 + m) / (1 + 2m)`` on, and the
    clip passes gradients straight through, so a value held on a bound can
    still be pulled back inside.

    Args:
        numeric_width: int, leading numeric columns (sigmoid).
        blocks: list of `[start, end]` for the discrete blocks (softmax each),
            contiguous and following the numeric block.
        numeric_margin: float, default 0 (v1's sigmoid): how far past [0, 1]
            the numerics' sigmoid is stretched before the clip.
    """

    def __init__(self, numeric_width, blocks, numeric_margin=0.0, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.numeric_width = int(numeric_width)
        self.numeric_margin = float(numeric_margin)
        if self.numeric_margin < 0:
            raise ValueError(f"numeric_margin must be zero or positive, got {numeric_margin}")
        self.blocks = [[int(s), int(e)] for s, e, *_ in blocks]
        expected = self.numeric_width
        for start, end in self.blocks:
            if start != expected or end <= start:
                raise ValueError(
                    f"blocks must be contiguous after {self.numeric_width} numeric columns; "
                    f"got {self.blocks}"
                )
            expected = end

    def call(self, inputs):
        numeric = ops.sigmoid(inputs[..., : self.numeric_width])
        if self.numeric_margin:
            m = self.numeric_margin
            stretched = (1.0 + 2.0 * m) * numeric - m
            numeric = stretched + ops.stop_gradient(ops.clip(stretched, 0.0, 1.0) - stretched)
        parts = [numeric]
        for start, end in self.blocks:
            parts.append(ops.softmax(inputs[..., start:end], axis=-1))
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "numeric_width": self.numeric_width,
            "blocks": self.blocks,
            "numeric_margin": self.numeric_margin,
        }


@keras.saving.register_keras_serializable(package="hg_keras")
class StaticPooling(keras.layers.Layer):
    """Makes the given columns constant over time: their mean over time, broadcast.

    Applied to the generator's logits before :class:`BlockActivation`, it gives
    every static attribute (e.g. Gender) one value per synthetic patient;
    Health Gym v1 let such attributes change from month to month.

    With a mask (variable-length patients) the mean runs over real steps only.

    Args:
        columns: list of int, the encoded columns to pool.
        width: int, total number of columns.
    """

    def __init__(self, columns, width, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.columns = [int(c) for c in columns]
        self.width = int(width)

    def call(self, inputs, mask=None):
        chosen = ops.convert_to_tensor(
            [1.0 if k in set(self.columns) else 0.0 for k in range(self.width)], dtype=inputs.dtype
        )
        if mask is None:
            pooled = ops.mean(inputs, axis=1, keepdims=True)
        else:
            # The mean over a patient's real steps only.
            weights = ops.cast(mask, inputs.dtype)[..., None]
            total = ops.sum(inputs * weights, axis=1, keepdims=True)
            pooled = total / ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)
        return inputs * (1.0 - chosen) + pooled * chosen

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "columns": self.columns, "width": self.width}
