"""Noise channels with memory beside Health Gym v1's fresh noise per month."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hg_keras")
class SlowNoise(keras.layers.Layer):
    """Turns noise channels into stationary AR(1) series of unit variance.

    With fresh noise every month, a stretch of several high months (a
    viral-load rebound that lasts a season) must be latched by the LSTM
    state, which adversarial training learns slowly; a month of high noise
    gives a one-month spike instead. Here channels `start` to
    `start + dims` become ``s_0 = e_0``, ``s_t = memory * s_{t-1} +
    sqrt(1 - memory**2) * e_t``, where `e` is the channel standardized
    (uniform noise centred and scaled to variance 1), so they wander
    with a correlation of ``memory**k`` over `k` steps. The filter is
    causal: padding after a patient's last step does not reach its steps.
    The noise tensor keeps its shape, so training, ``sample`` and the
    SavedModel draw the same noise as without it.

    Args:
        dims: int, channels made slow (0 leaves the noise as is).
        start: int, the first of them (after a patient latent's channels).
        memory: float in [0, 1), the correlation of consecutive steps.
        distribution: str, the noise's: ``uniform`` (U[0, 1)) or ``normal``.

    Input and output shape: `(batch, time, latent_dim)`.
    """

    def __init__(self, dims, start=0, memory=0.8, distribution="uniform", **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        if not isinstance(dims, int) or dims < 0 or not isinstance(start, int) or start < 0:
            raise ValueError(f"dims and start must be non-negative integers, got {dims}, {start}")
        if not 0 <= memory < 1:
            raise ValueError(f"memory must be in [0, 1), got {memory!r}")
        if distribution not in ("uniform", "normal"):
            raise ValueError(f"distribution must be 'uniform' or 'normal', got {distribution!r}")
        self.dims, self.start, self.memory = dims, start, float(memory)
        self.distribution = distribution

    def call(self, inputs):
        end = self.start + self.dims
        e = inputs[..., self.start : end]
        if self.distribution == "uniform":
            e = (e - 0.5) * 12.0**0.5
        steps = ops.shape(inputs)[1]
        t = ops.cast(ops.arange(steps), inputs.dtype)
        lag = t[:, None] - t[None, :]
        # weights[t, k]: memory**(t - k) for k <= t, times the innovation's
        # scale except for the first step, which starts the stationary series.
        scale = ops.where(t[None, :] > 0, (1.0 - self.memory**2) ** 0.5, 1.0)
        weights = ops.where(lag >= 0, ops.power(self.memory, ops.maximum(lag, 0.0)) * scale, 0.0)
        slow = ops.einsum("tk,bkd->btd", weights, e)
        return ops.concatenate([inputs[..., : self.start], slow, inputs[..., end:]], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dims": self.dims,
            "start": self.start,
            "memory": self.memory,
            "distribution": self.distribution,
        }
