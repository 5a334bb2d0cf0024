"""Health Gym v1's critic: an encoded sequence to one realism score."""

import keras

from hg_keras.data.transforms import PAD
from hg_keras.layers import SequenceScore, SoftEmbedding, bidirectional_gate_lstm


@keras.saving.register_keras_serializable(package="hg_keras")
class Critic(keras.Model):
    """Soft embedding, two Dense+LeakyReLU(0.1), biLSTM final states, Dense(1).

    Args:
        features: dict from ``FeatureLayout.spec()``.
        hidden_units: int, dense and LSTM width (v1: 128).
        recurrent: str, ``gate`` (:class:`GateLSTM`) or ``keras`` (benchmark reference).
        masked: bool, for variable-length patients: steps equal to
            :data:`PAD` are masked, so a patient's score reads its real steps only.
        step_scores: bool, default False (v1: final states only). Also score
            every month and add the mean (:class:`SequenceScore`).

    Input shape: `(batch, time, width)`. Output shape: `(batch, 1)`, unbounded.
    """

    def __init__(
        self,
        features,
        hidden_units=128,
        recurrent="gate",
        masked=False,
        step_scores=False,
        **kwargs,
    ):
        # Layers
        embed = SoftEmbedding(features["numeric_width"], features["blocks"], name="embedding")
        dense_1 = keras.layers.Dense(hidden_units, name="dense_1")
        dense_2 = keras.layers.Dense(hidden_units, name="dense_2")
        recurrent_layer = bidirectional_gate_lstm(
            hidden_units, return_sequences=step_scores, name="bilstm", recurrent=recurrent
        )
        if step_scores:
            score = SequenceScore(hidden_units, name="score")
        else:
            score = keras.layers.Dense(1, name="score")

        # Graph
        sequences = keras.Input(shape=(None, features["width"]), name="sequences")
        x = keras.layers.Masking(PAD, name="padding")(sequences) if masked else sequences
        x = embed(x)
        x = keras.layers.LeakyReLU(0.1, name="act_1")(dense_1(x))
        x = keras.layers.LeakyReLU(0.1, name="act_2")(dense_2(x))
        outputs = score(recurrent_layer(x))
        super().__init__(inputs=sequences, outputs=outputs, **kwargs)

        # Config
        self.features = features
        self.hidden_units = hidden_units
        self.recurrent = recurrent
        self.masked = masked
        self.step_scores = step_scores

    def get_config(self):
        return {
            "name": self.name,
            "features": self.features,
            "hidden_units": self.hidden_units,
            "recurrent": self.recurrent,
            "masked": self.masked,
            "step_scores": self.step_scores,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
