"""Health Gym v1's generator: noise per time step to an encoded patient sequence."""

import keras

from hg_keras.data.transforms import PAD
from hg_keras.layers import (
    AppendCondition,
    BlockActivation,
    FlipBackwardHalf,
    ImposeCondition,
    PatientLatent,
    SlowNoise,
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
        masked: bool, for variable-length patients: noise steps equal to
            :data:`PAD` are masked (no LSTM update, excluded from static pooling).
        condition_columns: list of encoded columns (the static discrete
            blocks) given as a second input, `(batch, len(condition_columns))`,
            appended to the noise and imposed on the output; empty for an
            unconditional generator.
        patient_latent_dim: int, default 0 (v1): the first this many noise
            channels of month 0 are held for every month
            (:class:`PatientLatent`), a per-patient latent beside the
            per-month noise.
        slow_noise_dim: int, default 0 (v1): the next this many noise
            channels after the patient latent become AR(1) series with
            consecutive-step correlation `slow_noise_memory`
            (:class:`SlowNoise`).
        slow_noise_memory: float in [0, 1).
        latent_distribution: str, the noise's distribution (``uniform`` or
            ``normal``), which :class:`SlowNoise` standardizes.
        numeric_margin: float, default 0 (v1's sigmoid): > 0 gives the
            censored numeric head of :class:`BlockActivation`, which
            generates values exactly on the bounds of the training range.

    Input shape: `(batch, time, latent_dim)`, and the condition when conditional.
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
        masked=False,
        condition_columns=(),
        patient_latent_dim=0,
        slow_noise_dim=0,
        slow_noise_memory=0.8,
        latent_distribution="uniform",
        numeric_margin=0.0,
        **kwargs,
    ):
        if not 0 <= patient_latent_dim + slow_noise_dim <= latent_dim:
            raise ValueError(
                f"patient_latent_dim + slow_noise_dim must be between 0 and "
                f"latent_dim={latent_dim}, got {patient_latent_dim} + {slow_noise_dim}"
            )
        condition_columns = [int(c) for c in condition_columns]
        if static_head not in ("pooled", "v1"):
            raise ValueError(f"static_head must be 'pooled' or 'v1', got {static_head!r}")
        # Layers
        recurrent_layer = bidirectional_gate_lstm(hidden_units, name="bilstm", recurrent=recurrent)
        dense_1 = keras.layers.Dense(hidden_units, name="dense_1")
        dense_2 = keras.layers.Dense(hidden_units, name="dense_2")
        logits = keras.layers.Dense(features["width"], name="logits")
        heads = BlockActivation(
            features["numeric_width"], features["blocks"], numeric_margin, name="heads"
        )

        # Graph
        noise = keras.Input(shape=(None, latent_dim), name="noise")
        inputs = noise
        x = keras.layers.Masking(PAD, name="padding")(noise) if masked else noise
        if patient_latent_dim:
            x = PatientLatent(patient_latent_dim, name="patient_latent")(x)
        if slow_noise_dim:
            x = SlowNoise(
                slow_noise_dim,
                patient_latent_dim,
                slow_noise_memory,
                latent_distribution,
                name="slow_noise",
            )(x)
        if condition_columns:
            condition = keras.Input(shape=(len(condition_columns),), name="condition")
            inputs = [noise, condition]
            x = AppendCondition(name="append_condition")([x, condition])
        x = recurrent_layer(x)
        if not align_backward:
            x = FlipBackwardHalf(hidden_units, name="v1_unaligned")(x)
        x = keras.layers.LeakyReLU(0.1, name="act_1")(dense_1(x))
        x = keras.layers.LeakyReLU(0.1, name="act_2")(dense_2(x))
        x = logits(x)
        if static_head == "pooled" and features["static_columns"]:
            x = StaticPooling(features["static_columns"], features["width"], name="static")(x)
        outputs = heads(x)
        if condition_columns:
            outputs = ImposeCondition(condition_columns, features["width"], name="impose")(
                [outputs, condition]
            )
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # Config
        self.features = features
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        self.align_backward = align_backward
        self.static_head = static_head
        self.recurrent = recurrent
        self.masked = masked
        self.condition_columns = condition_columns
        self.patient_latent_dim = patient_latent_dim
        self.slow_noise_dim = slow_noise_dim
        self.slow_noise_memory = slow_noise_memory
        self.latent_distribution = latent_distribution
        self.numeric_margin = numeric_margin

    @property
    def conditional(self):
        return bool(self.condition_columns)

    def get_config(self):
        return {
            "name": self.name,
            "features": self.features,
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "align_backward": self.align_backward,
            "static_head": self.static_head,
            "recurrent": self.recurrent,
            "masked": self.masked,
            "condition_columns": self.condition_columns,
            "patient_latent_dim": self.patient_latent_dim,
            "slow_noise_dim": self.slow_noise_dim,
            "slow_noise_memory": self.slow_noise_memory,
            "latent_distribution": self.latent_distribution,
            "numeric_margin": self.numeric_margin,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
