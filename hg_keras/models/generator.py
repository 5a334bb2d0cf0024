"""Health Gym v1's generator: noise per time step to an encoded patient sequence."""

import keras

from hg_keras.layers import (
    BlockActivation,
    FlipBackwardHalf,
    StaticPooling,
    bidirectional_gate_lstm,
)


@keras.saving.register_keras_serializable(package="hg_keras")
class Generator(keras.Model):
    """biLSTM, two Dense+LeakyReLU(0.1), Dense(features), block-wise heads.

    Args:
        features: dict from ``FeatureLayout.spec()``: ``width``,
            ``numeric_width``, ``blocks`` and ``static_columns``.
        latent_dim: int, noise features per time step (v1: 128).
        hidden_units: int, LSTM and dense width (v1: 128).
        align_backward: bool, default True: the backward LSTM stream is
            flipped back into time order, so step t sees the past and the
            future of step t. False reproduces v1, whose backward features at
            step t came from step L-1-t; that only makes sense as a bug to
            reproduce.
        static_head: str, ``pooled`` (default) averages the logits of static
            columns over time, so a synthetic patient has one Gender and one
            Ethnic; ``v1`` lets them vary month to month.
        recurrent: str, ``gate`` (:class:`GateLSTM`) or ``keras`` (the
            ``keras.layers.LSTM`` reference used by the benchmark).

    Input shape: `(batch, time, latent_dim)`.
    Output shape: `(batch, time, width)`: sigmoid numerics, softmax blocks.
    """

    def __init__(
        self,
        features,
        latent_dim=128,
        hidden_units=128,
        align_backward=True,
        static_head="pooled",
        recurrent="gate",
        **kwargs,
    ):
        if static_head not in ("pooled", "v1"):
            raise ValueError(f"static_head must be 'pooled' or 'v1', got {static_head!r}")
        # Layers
        recurrent_layer = bidirectional_gate_lstm(hidden_units, name="bilstm", recurrent=recurrent)
        dense_1 = keras.layers.Dense(hidden_units, name="dense_1")
        dense_2 = keras.layers.Dense(hidden_units, name="dense_2")
        logits = keras.layers.Dense(features["width"], name="logits")
        heads = BlockActivation(features["numeric_width"], features["blocks"], name="heads")

        # Graph
        noise = keras.Input(shape=(None, latent_dim), name="noise")
        x = recurrent_layer(noise)
        if not align_backward:
            x = FlipBackwardHalf(hidden_units, name="v1_unaligned")(x)
        x = keras.layers.LeakyReLU(0.1, name="act_1")(dense_1(x))
        x = keras.layers.LeakyReLU(0.1, name="act_2")(dense_2(x))
        x = logits(x)
        if static_head == "pooled" and features["static_columns"]:
            x = StaticPooling(features["static_columns"], features["width"], name="static")(x)
        outputs = heads(x)
        super().__init__(inputs=noise, outputs=outputs, **kwargs)

        # Config
        self.features = features
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        self.align_backward = align_backward
        self.static_head = static_head
        self.recurrent = recurrent

    def get_config(self):
        return {
            "name": self.name,
            "features": self.features,
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "align_backward": self.align_backward,
            "static_head": self.static_head,
            "recurrent": self.recurrent,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
