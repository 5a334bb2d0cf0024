"""GateLSTM's fused kernel: the same equations, outputs and gradients as the
NumPy reference, taken only where no second derivative flows."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf
from references import reference_lstm

from hg_keras.layers import GateLSTM
from hg_keras.layers.gate_lstm import first_order_only, fused_kernel, loop_only


@contextlib.contextmanager
def fused():
    """The fused kernel on any device (the default takes it only with a GPU)."""
    with first_order_only(), fused_kernel():
        yield


@pytest.fixture
def layer():
    layer = GateLSTM(4, return_state=True)
    layer.build((None, None, 3))
    # Forget, input and candidate gates near 1: the cell grows past 3, where
    # a kernel with its default clipping would differ.
    bias = np.zeros(16, np.float32)
    bias[:12] = 4.0
    layer.i2h_bias.assign(bias)
    return layer


@pytest.fixture
def x():
    return np.random.default_rng(1).normal(size=(2, 8, 3)).astype("float32")


def ops_of(function, *args):
    graph = tf.function(function).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def test_fused_outputs_equal_the_numpy_reference(layer, x):
    with fused():
        sequence, h, c = layer(x)
    expected, h_ref, c_ref = reference_lstm(x.astype(np.float64), *layer.get_weights())
    assert np.abs(c_ref).max() > 5  # the unclipped regime
    np.testing.assert_allclose(sequence, expected, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, atol=1e-5)
    np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=1e-5)


def test_fused_backwards_reads_reversed(x):
    layer = GateLSTM(5, go_backwards=True)
    with fused():
        output = layer(x)
    expected, _, _ = reference_lstm(x[:, ::-1].astype(np.float64), *layer.get_weights())
    np.testing.assert_allclose(output, expected, atol=1e-5)


def test_fused_gradients_equal_numpy_finite_differences(layer, x):
    """d loss / d x and d loss / d i2h_bias against central differences of the
    float64 NumPy reference, loss = sum(sequence * w) + sum(c_T)."""
    w = np.random.default_rng(2).normal(size=(2, 8, 4))
    weights = [v.astype(np.float64) for v in layer.get_weights()]

    def loss(x_, i2h_bias):
        sequence, _, c = reference_lstm(x_, weights[0], i2h_bias, weights[2], weights[3])
        return float(np.sum(sequence * w) + np.sum(c))

    def central(f, value):
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            step = np.zeros_like(value)
            step[index] = 1e-6
            grad[index] = (f(value + step) - f(value - step)) / 2e-6
        return grad

    x64 = x.astype(np.float64)
    expected_x = central(lambda v: loss(v, weights[1]), x64)
    expected_bias = central(lambda v: loss(x64, v), weights[1])
    tensor = tf.constant(x)
    with tf.GradientTape() as tape, fused():
        tape.watch(tensor)
        sequence, _, c = layer(tensor)
        value = tf.reduce_sum(sequence * w.astype(np.float32)) + tf.reduce_sum(c)
    grad_x, grad_bias = tape.gradient(value, [tensor, layer.i2h_bias])
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grad_bias, expected_bias, rtol=1e-3, atol=1e-4)


def test_dispatch_fused_only_for_first_order_calls_and_never_with_a_mask(layer, x):
    spec = tf.TensorSpec((None, None, 3), tf.float32)
    mask = tf.TensorSpec((None, None), tf.bool)
    plain = ops_of(lambda v: layer(v), spec)
    with fused_kernel():
        unmarked = ops_of(lambda v: layer(v), spec)  # may need a second derivative
    with fused():
        taken = ops_of(lambda v: layer(v), spec)
        masked = ops_of(lambda v, m: layer(v, mask=m), spec, mask)
        with loop_only():
            switched_off = ops_of(lambda v: layer(v), spec)
    with first_order_only():
        by_device = ops_of(lambda v: layer(v), spec)
    assert "BlockLSTM" in taken and "While" not in taken
    for graph in (plain, unmarked, masked, switched_off):
        assert "BlockLSTM" not in graph and "While" in graph
    # By default the fused kernel is the GPU's path; this CPU keeps the loop.
    gpu = bool(tf.config.list_logical_devices("GPU"))
    assert ("BlockLSTM" in by_device) == gpu


def test_a_second_derivative_through_the_fused_kernel_is_refused(layer, x):
    tensor = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(tensor)
        with tf.GradientTape() as inner, fused():
            inner.watch(tensor)
            value = tf.reduce_sum(layer(tensor)[0])
        norm = tf.reduce_sum(tf.square(inner.gradient(value, tensor)))
    with pytest.raises(LookupError, match="BlockLSTMGrad"):
        outer.gradient(norm, layer.h2h_kernel)


def test_training_step_with_the_fused_kernel_equals_the_loop(tiny_config_path):
    from hg_keras.config import load_config
    from hg_keras.data import CohortTransformer, load_cohort
    from hg_keras.training import build_wgan

    config = load_config(tiny_config_path)
    frame = load_cohort(patients=8)
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = transformer.encode(frame)[:, :6]
    losses = []
    for use_fused in (True, False):
        tf.keras.utils.set_random_seed(0)
        wgan = build_wgan(config, transformer, encoded)
        step = tf.function(wgan.train_step)
        with fused_kernel() if use_fused else loop_only():
            logs = step(tf.constant(encoded))
        losses.append({name: float(value) for name, value in logs.items()})
        weights = [w.numpy() for w in wgan.generator.weights]
        losses[-1]["weights"] = weights
    with_fused, with_loop = losses
    for name in ("critic_loss", "gradient_penalty", "generator_loss", "correlation_loss"):
        assert with_fused[name] == pytest.approx(with_loop[name], rel=1e-4, abs=1e-5), name
    for a, b in zip(with_fused["weights"], with_loop["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
