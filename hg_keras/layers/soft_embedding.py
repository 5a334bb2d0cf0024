"""The critic's soft embedding of discrete blocks."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hg_keras")
class SoftEmbedding(keras.layers.Layer):
    """Numerics pass through; each discrete block is multiplied by its own table.

    Health Gym v1's critic embeds a one-hot (real data) or softmax (generated
    data) block ``x[..., s:e]`` as ``x[..., s:e] @ W`` with ``W`` of shape
    `(classes, embedding_size)`. Unlike an index lookup this is
    differentiable in the block, which the gradient penalty needs: it is
    taken at interpolations between real and fake blocks.

    Args:
        numeric_width: int, leading numeric columns passed through unchanged.
        blocks: list of `[start, end, embedding_size]` for the discrete blocks.

    Input shape: `(batch, time, features)`.
    Output shape: `(batch, time, numeric_width + sum(embedding_size))`.
    """

    def __init__(self, numeric_width, blocks, embeddings_initializer="random_normal", **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.numeric_width = int(numeric_width)
        self.blocks = [[int(s), int(e), int(k)] for s, e, k in blocks]
        for start, end, size in self.blocks:
            if end <= start or size < 1:
                raise ValueError(
                    f"blocks must be [start, end, size] with end > start, got {[start, end, size]}"
                )
        # nn.Embedding's default init is N(0, 1).
        self.embeddings_initializer = keras.initializers.get(
            {"class_name": "RandomNormal", "config": {"stddev": 1.0}}
            if embeddings_initializer == "random_normal"
            else embeddings_initializer
        )

    def build(self, input_shape):
        self.tables = [
            self.add_weight(
                name=f"embedding_{k}",
                shape=(end - start, size),
                initializer=self.embeddings_initializer,
            )
            for k, (start, end, size) in enumerate(self.blocks)
        ]

    def call(self, inputs):
        parts = [inputs[..., : self.numeric_width]]
        for (start, end, _), table in zip(self.blocks, self.tables):
            parts.append(ops.matmul(inputs[..., start:end], table))
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        width = self.numeric_width + sum(size for _, _, size in self.blocks)
        return (*input_shape[:-1], width)

    def get_config(self):
        return {
            **super().get_config(),
            "numeric_width": self.numeric_width,
            "blocks": self.blocks,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }
