import keras
import numpy as np
import pytest
import scipy.special

from hg_keras.layers import BlockActivation, SoftEmbedding, StaticPooling


def test_block_activation_matches_scipy():
    x = np.random.default_rng(1).normal(size=(2, 3, 7)).astype("float32")
    layer = BlockActivation(2, [[2, 4], [4, 7]])
    y = np.asarray(layer(x))
    np.testing.assert_allclose(y[..., :2], scipy.special.expit(x[..., :2]), rtol=1e-5)
    np.testing.assert_allclose(y[..., 2:4], scipy.special.softmax(x[..., 2:4], axis=-1), rtol=1e-5)
    np.testing.assert_allclose(y[..., 4:], scipy.special.softmax(x[..., 4:], axis=-1), rtol=1e-5)
    assert BlockActivation.from_config(layer.get_config()).blocks == [[2, 4], [4, 7]]


def test_censored_numeric_head_reaches_the_bounds_with_straight_through_gradients():
    """NumPy reference: clip((1 + 2m) * expit(x) - m, 0, 1); gradient (1 + 2m) * expit'(x)."""
    import tensorflow as tf

    x = np.linspace(-6.0, 6.0, 25, dtype="float32").reshape(1, 25, 1)
    m = 0.1
    layer = BlockActivation(1, [], numeric_margin=m)
    s = scipy.special.expit(x)
    expected = np.clip((1 + 2 * m) * s - m, 0.0, 1.0)
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = layer(inputs)
        total = tf.reduce_sum(y)
    gradient = tape.gradient(total, inputs).numpy()
    np.testing.assert_allclose(np.asarray(y), expected, atol=1e-6)
    assert (np.asarray(y) == 0.0).any() and (np.asarray(y) == 1.0).any()
    # Clipped values still pass the stretched sigmoid's gradient back.
    np.testing.assert_allclose(gradient, (1 + 2 * m) * s * (1 - s), rtol=1e-4)
    assert BlockActivation.from_config(layer.get_config()).numeric_margin == m
    with pytest.raises(ValueError, match="numeric_margin"):
        BlockActivation(1, [], numeric_margin=-0.1)


def test_block_activation_rejects_gaps():
    with pytest.raises(ValueError, match="contiguous"):
        BlockActivation(2, [[3, 5]])


def test_soft_embedding_is_block_matmul():
    x = np.random.default_rng(2).random((2, 3, 6)).astype("float32")
    layer = SoftEmbedding(1, [[1, 3, 2], [3, 6, 4]])
    y = np.asarray(layer(x))
    first, second = (w.numpy() for w in layer.tables)
    expected = np.concatenate([x[..., :1], x[..., 1:3] @ first, x[..., 3:6] @ second], axis=-1)
    np.testing.assert_allclose(y, expected, rtol=1e-5)
    assert y.shape == layer.compute_output_shape((2, 3, 6)) == (2, 3, 7)
    clone = SoftEmbedding.from_config(layer.get_config())
    assert clone.blocks == layer.blocks


def test_static_pooling_makes_columns_constant():
    x = np.random.default_rng(3).normal(size=(2, 5, 4)).astype("float32")
    y = np.asarray(StaticPooling([1, 2], 4)(x))
    np.testing.assert_allclose(
        y[..., 1:3], np.broadcast_to(x[..., 1:3].mean(1, keepdims=True), (2, 5, 2)), rtol=1e-6
    )
    np.testing.assert_array_equal(y[..., [0, 3]], x[..., [0, 3]])


def test_layers_train_in_a_model():
    inputs = keras.Input((None, 6))
    x = SoftEmbedding(1, [[1, 3, 2], [3, 6, 4]])(inputs)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    before = [w.copy() for w in model.get_weights()]
    model.fit(np.ones((4, 2, 6), "float32"), np.zeros((4, 2, 1)), verbose=0, epochs=1)
    changed = [not np.allclose(a, b) for a, b in zip(before, model.get_weights())]
    assert all(changed)
