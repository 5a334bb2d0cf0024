"""A per-patient latent beside Health Gym v1's per-month noise."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hg_keras")
class PatientLatent(keras.layers.Layer):
    """Holds the first `dims` noise channels of the first month for every month.

    v1 feeds the generator fresh noise every month, so anything a patient
    keeps over time (a set point, an adherence level, a regimen) must be
    carried by the LSTM state, and early in training the output is close to
    white noise over time. Here the first `dims` channels of month 0 become
    the patient's latent, repeated at every month, and the other channels
    stay per-month noise. The noise tensor keeps its shape, so training,
    ``sample`` and the SavedModel draw exactly the same noise as before.

    Args:
        dims: int, channels of the per-patient latent (0 leaves the noise as is).

    Input and output shape: `(batch, time, latent_dim)`.
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        if not isinstance(dims, int) or dims < 0:
            raise ValueError(f"dims must be a non-negative integer, got {dims!r}")
        self.dims = dims

    def call(self, inputs):
        steps = ops.shape(inputs)[1]
        patient = ops.repeat(inputs[:, :1, : self.dims], steps, axis=1)
        return ops.concatenate([patient, inputs[..., self.dims :]], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}
