"""The seed's ``MyLSTM`` as a Keras layer, and its bidirectional wrapper.

Health Gym v1 wrote its own LSTM because the gradient penalty differentiates
the critic twice and cuDNN RNN kernels have no second-order gradient. The
gate equations, in the seed's order f, i, a, o, are::

    z = x W_i + b_i + h W_h + b_h;  f, i, a, o = split(z, 4)
    c = sigmoid(f) * c + sigmoid(i) * tanh(a)
    h = sigmoid(o) * tanh(c)

with zero initial state and no forget-gate bias offset.
"""

import contextlib
import threading

import keras
import tensorflow as tf
from keras import ops

_dispatch = threading.local()
FUSED_DTYPES = ("float16", "float32")  # BlockLSTM's types


@contextlib.contextmanager
def _setting(name, value):
    previous = getattr(_dispatch, name, None)
    setattr(_dispatch, name, value)
    try:
        yield
    finally:
        setattr(_dispatch, name, previous)


def first_order_only():
    """Marks GateLSTM calls traced inside as needing at most a first derivative.

    Enter it around forward passes (sampling, the fakes of a critic step),
    the critic's scores of real and fake batches (differentiated once, for
    its weights) and the generator update; never around the gradient
    penalty's critic call, which is differentiated twice (the fused kernel
    has none: TensorFlow raises rather than returning a wrong one). Marked
    calls take the fused kernel (:meth:`GateLSTM.fused_call`) where it is
    the faster path: when a GPU is visible. On CPU the loop stays: measured
    in alternation (``python cli.py bench``, BENCHMARKS.md), ``BlockLSTM``
    was 0.8x the loop's speed for generation and 0.95x for a training step.
    """
    return _setting("first_order", True)


def loop_only():
    """GateLSTM calls traced inside never take the fused kernel (benchmarks, tests)."""
    return _setting("kernel", "loop")


def fused_kernel():
    """Marked GateLSTM calls traced inside take the fused kernel on any device
    (benchmarks, tests)."""
    return _setting("kernel", "fused")


def _fused_dispatch(dtype):
    """Whether a call takes the fused kernel now: marked first-order, a dtype it
    has, and either forced or on a machine with a GPU."""
    kernel = getattr(_dispatch, "kernel", None)
    if kernel == "loop" or not getattr(_dispatch, "first_order", False):
        return False
    if tf.as_dtype(dtype).name not in FUSED_DTYPES:
        return False
    return kernel == "fused" or bool(tf.config.list_logical_devices("GPU"))


# The fused kernel's gate blocks are i, a, f, o (ICFO); the seed's are f, i, a, o.
_ICFO = (1, 2, 0, 3)


@keras.saving.register_keras_serializable(package="hg_keras")
class GateLSTM(keras.layers.Layer):
    """An LSTM with Health Gym's gate equations and weight layout.

    The loop is a ``tf.while_loop`` over TensorArrays (as Keras's own RNN
    loop on the TF backend), which supports second-order gradients and any
    sequence length, and stores only `h`, and only when sequences are
    returned. Measured for a gradient penalty through one layer (batch 256,
    60 steps, 128 units, 2-core CPU): hoisting ``x W_i`` out of the loop into
    one matmul made it slower (0.18 s against 0.14 s: the loop then carries
    4*units-wide inputs through both backward passes), and so was
    ``tf.scan``. ``keras.ops.scan`` is not used: in Keras 3.15 its TF backend
    sizes the per-step outputs like the carry.

    Args:
        units: int, hidden size.
        return_sequences: bool, default True. Return `(batch, time, units)`
            instead of the last hidden state `(batch, units)`.
        return_state: bool, default False. Also return the final `h` and `c`.
        go_backwards: bool, default False. Read the sequence from the end; the
            returned sequence is then in reverse time order (Keras's
            convention, which `keras.layers.Bidirectional` relies on).
        kernel_initializer, recurrent_initializer, bias_initializer: default
            PyTorch's ``nn.Linear`` init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
            when None.

    Input shape: `(batch, time, features)`.

    Weights, in order: ``i2h_kernel (features, 4*units)``, ``i2h_bias
    (4*units,)``, ``h2h_kernel (units, 4*units)``, ``h2h_bias (4*units,)``.
    """

    def __init__(
        self,
        units,
        return_sequences=True,
        return_state=False,
        go_backwards=False,
        kernel_initializer=None,
        recurrent_initializer=None,
        bias_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.supports_masking = True
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        self.units = units
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = False
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def _initializer(self, given, fan_in):
        if given is not None:
            return keras.initializers.get(given)
        limit = 1.0 / fan_in**0.5
        return keras.initializers.RandomUniform(-limit, limit)

    def build(self, input_shape):
        features = input_shape[-1]
        gates = 4 * self.units
        self.i2h_kernel = self.add_weight(
            name="i2h_kernel",
            shape=(features, gates),
            initializer=self._initializer(self.kernel_initializer, features),
        )
        self.i2h_bias = self.add_weight(
            name="i2h_bias",
            shape=(gates,),
            initializer=self._initializer(self.bias_initializer, features),
        )
        self.h2h_kernel = self.add_weight(
            name="h2h_kernel",
            shape=(self.units, gates),
            initializer=self._initializer(self.recurrent_initializer, self.units),
        )
        self.h2h_bias = self.add_weight(
            name="h2h_bias",
            shape=(gates,),
            initializer=self._initializer(self.bias_initializer, self.units),
        )
        self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: features})

    def call(self, inputs, initial_state=None, mask=None, training=None):
        # `Bidirectional` passes this; the seed's LSTM always starts at zero.
        if initial_state is not None:
            raise ValueError("GateLSTM starts from a zero state")
        x = ops.convert_to_tensor(inputs)
        if self.go_backwards:
            x = ops.flip(x, axis=1)
        if mask is None and _fused_dispatch(x.dtype):
            return self._outputs(*self.fused_call(x))
        time_major = ops.transpose(x, (1, 0, 2))
        steps = tf.shape(time_major)[0]
        inputs_ta = tf.TensorArray(x.dtype, size=steps).unstack(time_major)
        outputs_ta = tf.TensorArray(x.dtype, size=steps if self.return_sequences else 0)
        zeros = tf.zeros((tf.shape(x)[0], self.units), dtype=x.dtype)
        if mask is not None:
            # Masked (padded) steps keep the state and output zeros, so a
            # patient's last state is that of its last real step.
            mask = ops.cast(ops.convert_to_tensor(mask), "bool")
            if self.go_backwards:
                mask = ops.flip(mask, axis=1)
            mask_ta = tf.TensorArray(tf.bool, size=steps).unstack(ops.transpose(mask))

        def step(t, h, c, outputs):
            z = (
                ops.matmul(inputs_ta.read(t), self.i2h_kernel)
                + self.i2h_bias
                + ops.matmul(h, self.h2h_kernel)
                + self.h2h_bias
            )
            f, i, a, o = ops.split(z, 4, axis=-1)
            c_new = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(a)
            h_new = ops.sigmoid(o) * ops.tanh(c_new)
            if mask is None:
                h, c, output = h_new, c_new, h_new
            else:
                keep = mask_ta.read(t)[:, None]
                h = ops.where(keep, h_new, h)
                c = ops.where(keep, c_new, c)
                output = ops.where(keep, h_new, ops.zeros_like(h_new))
            if self.return_sequences:
                outputs = outputs.write(t, output)
            return t + 1, h, c, outputs

        _, h_last, c_last, outputs_ta = tf.while_loop(
            lambda t, *_: t < steps,
            step,
            (tf.constant(0), zeros, zeros, outputs_ta),
            parallel_iterations=32,
            swap_memory=True,
        )
        sequence = ops.transpose(outputs_ta.stack(), (1, 0, 2)) if self.return_sequences else None
        return self._outputs(sequence, h_last, c_last)

    def fused_call(self, x):
        """The same equations through TensorFlow's fused LSTM kernel (``BlockLSTM``).

        One op runs every step (CPU and GPU kernels), with the two matmuls
        of a step fused into one over ``[x_t, h]`` and the gate blocks
        permuted to the kernel's i, a, f, o order (no forget bias, no
        clipping); its gradient is the fused ``BlockLSTMGrad``, which has no
        gradient of its own. (``BlockLSTMV2``'s registered gradient was
        measured wrong against finite differences in TF 2.21, so V1 is used.)

        Args:
            x: `(batch, time, features)`, already flipped for ``go_backwards``.

        Returns:
            (sequence `(batch, time, units)`, last h, last c).
        """
        units = self.units

        def icfo(tensor):
            blocks = tf.split(tensor, 4, axis=-1)
            return tf.concat([blocks[k] for k in _ICFO], axis=-1)

        kernel = icfo(tf.concat([self.i2h_kernel, self.h2h_kernel], axis=0))
        bias = icfo(self.i2h_bias + self.h2h_bias)
        time_major = tf.transpose(x, (1, 0, 2))
        zeros = tf.zeros((tf.shape(x)[0], units), x.dtype)
        no_peephole = tf.zeros((units,), x.dtype)
        _, cells, _, _, _, _, hidden = tf.raw_ops.BlockLSTM(
            seq_len_max=tf.cast(tf.shape(x)[1], tf.int64),
            x=time_major,
            cs_prev=zeros,
            h_prev=zeros,
            w=tf.cast(kernel, x.dtype),
            wci=no_peephole,
            wcf=no_peephole,
            wco=no_peephole,
            b=tf.cast(bias, x.dtype),
            forget_bias=0.0,
            cell_clip=-1.0,  # no clipping
            use_peephole=False,
        )
        return tf.transpose(hidden, (1, 0, 2)), hidden[-1], cells[-1]

    def _outputs(self, sequence, h_last, c_last):
        output = sequence if self.return_sequences else h_last
        if self.return_state:
            return output, h_last, c_last
        return output

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        batch, time = input_shape[0], input_shape[1]
        output = (batch, time, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return output, (batch, self.units), (batch, self.units)
        return output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "kernel_initializer": _serialize(self.kernel_initializer),
                "recurrent_initializer": _serialize(self.recurrent_initializer),
                "bias_initializer": _serialize(self.bias_initializer),
            }
        )
        return config


def _serialize(initializer):
    if initializer is None or isinstance(initializer, str):
        return initializer
    return keras.initializers.serialize(initializer)


def bidirectional_gate_lstm(units, return_sequences=True, name=None, recurrent="gate"):
    """``keras.layers.Bidirectional`` over :class:`GateLSTM` (outputs concatenated).

    With sequences, Keras flips the backward stream back into time order, so
    position t holds both directions' features for step t.

    Args:
        recurrent: ``gate`` (default, :class:`GateLSTM`) or ``keras``: a
            ``keras.layers.LSTM`` of the same size without cuDNN, the
            reference that ``python cli.py bench`` compares against.
    """
    if recurrent == "gate":
        layer = GateLSTM(units, return_sequences=return_sequences)
    elif recurrent == "keras":
        layer = keras.layers.LSTM(units, return_sequences=return_sequences, use_cudnn=False)
    else:
        raise ValueError(f"recurrent must be 'gate' or 'keras', got {recurrent!r}")
    return keras.layers.Bidirectional(layer, merge_mode="concat", name=name)


@keras.saving.register_keras_serializable(package="hg_keras")
class FlipBackwardHalf(keras.layers.Layer):
    """Reverses the time order of the last `units` features.

    Applied after :func:`bidirectional_gate_lstm`, it reproduces Health Gym
    v1's generator, which concatenated the backward LSTM's output without
    flipping it back (position t held backward features of step L-1-t).

    Args:
        units: int, width of the backward half.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def call(self, inputs):
        forward, backward = inputs[..., : -self.units], inputs[..., -self.units :]
        return ops.concatenate([forward, ops.flip(backward, axis=1)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
