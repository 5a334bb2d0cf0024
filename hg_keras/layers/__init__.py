"""Custom Keras layers: the gate-equation LSTM, soft embedding, output heads, conditioning."""

from hg_keras.layers.block_activation import BlockActivation, StaticPooling
from hg_keras.layers.carry_forward import CarryForward
from hg_keras.layers.conditioning import AppendCondition, ImposeCondition
from hg_keras.layers.gate_lstm import FlipBackwardHalf, GateLSTM, bidirectional_gate_lstm
from hg_keras.layers.patient_latent import PatientLatent
from hg_keras.layers.sequence_score import SequenceScore
from hg_keras.layers.slow_noise import SlowNoise
from hg_keras.layers.soft_embedding import SoftEmbedding

__all__ = [
    "AppendCondition",
    "BlockActivation",
    "CarryForward",
    "ImposeCondition",
    "FlipBackwardHalf",
    "GateLSTM",
    "PatientLatent",
    "SequenceScore",
    "SlowNoise",
    "SoftEmbedding",
    "StaticPooling",
    "bidirectional_gate_lstm",
]
