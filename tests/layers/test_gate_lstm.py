import keras
import numpy as np
import pytest
import tensorflow as tf
from references import reference_lstm

from hg_keras.layers import FlipBackwardHalf, GateLSTM, bidirectional_gate_lstm


@pytest.fixture
def inputs():
    return np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")


def test_weights_have_the_seed_layout(inputs):
    layer = GateLSTM(6)
    layer(inputs)
    shapes = [w.shape for w in layer.get_weights()]
    assert shapes == [(4, 24), (24,), (6, 24), (24,)]
    assert [w.name for w in layer.weights] == ["i2h_kernel", "i2h_bias", "h2h_kernel", "h2h_bias"]


def test_matches_numpy_reference(inputs):
    layer = GateLSTM(6, return_state=True)
    sequence, h, c = layer(inputs)
    expected, h_ref, c_ref = reference_lstm(inputs.astype(np.float64), *layer.get_weights())
    assert np.abs(np.asarray(sequence) - expected).max() < 1e-5
    assert np.abs(np.asarray(h) - h_ref).max() < 1e-5
    assert np.abs(np.asarray(c) - c_ref).max() < 1e-5


def test_go_backwards_reads_reversed_and_returns_reversed(inputs):
    layer = GateLSTM(6, go_backwards=True)
    output = np.asarray(layer(inputs))
    expected, _, _ = reference_lstm(inputs[:, ::-1].astype(np.float64), *layer.get_weights())
    assert np.abs(output - expected).max() < 1e-5


def test_last_state_only(inputs):
    layer = GateLSTM(6, return_sequences=False)
    output = np.asarray(layer(inputs))
    _, h_ref, _ = reference_lstm(inputs.astype(np.float64), *layer.get_weights())
    assert output.shape == (3, 6) and np.abs(output - h_ref).max() < 1e-5


def reorder(w):
    """Our gate blocks f, i, a, o in Keras's order i, f, c, o."""
    f, i, a, o = np.split(w, 4, axis=-1)
    return np.concatenate([i, f, a, o], axis=-1)


def keras_copy(layer, inputs):
    """A Keras LSTMCell loop holding `layer`'s weights (blocks reordered, biases summed)."""
    i2h_kernel, i2h_bias, h2h_kernel, h2h_bias = layer.get_weights()
    keras_rnn = keras.layers.RNN(keras.layers.LSTMCell(layer.units), return_sequences=True)
    keras_rnn(inputs)
    keras_rnn.set_weights([reorder(i2h_kernel), reorder(h2h_kernel), reorder(i2h_bias + h2h_bias)])
    return keras_rnn


def test_equals_keras_lstm_cell_with_copied_weights(inputs):
    layer = GateLSTM(6)
    ours = np.asarray(layer(inputs))
    assert np.abs(np.asarray(keras_copy(layer, inputs)(inputs)) - ours).max() < 1e-5


def test_gradients_equal_keras_lstm_cell_with_copied_weights(inputs):
    """Computing x W_i inside our loop changes no gradient: compare with Keras's cell loop."""
    units = 6
    layer = GateLSTM(units)
    layer(inputs)
    keras_rnn = keras_copy(layer, inputs)
    x = tf.constant(inputs)
    target = tf.constant(np.random.default_rng(5).normal(size=(3, 5, units)), tf.float32)
    grads = []
    for model in (layer, keras_rnn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(model(x) * target)
        grads.append(tape.gradient(loss, [x] + model.trainable_variables))
    np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-5)
    np.testing.assert_allclose(reorder(grads[0][1].numpy()), grads[1][1], atol=1e-5)  # i2h
    np.testing.assert_allclose(reorder(grads[0][3].numpy()), grads[1][2], atol=1e-5)  # h2h
    np.testing.assert_allclose(reorder(grads[0][2].numpy()), grads[1][3], atol=1e-5)  # bias
    np.testing.assert_allclose(grads[0][2], grads[0][4], atol=1e-6)  # both biases alike


def test_second_order_gradients_are_finite(inputs):
    layer = GateLSTM(6, return_sequences=False)
    x = tf.constant(inputs)
    layer(x)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reduce_sum(layer(x))
        grad = inner.gradient(y, x)
        penalty = tf.reduce_sum(tf.square(grad))
    second = outer.gradient(penalty, layer.trainable_variables)
    assert all(g is not None for g in second)
    assert all(np.isfinite(g.numpy()).all() for g in second)
    assert any(np.abs(g.numpy()).sum() > 0 for g in second)


def test_variable_sequence_length():
    layer = GateLSTM(4)
    model_input = keras.Input((None, 3))
    model = keras.Model(model_input, layer(model_input))
    for steps in (1, 2, 7):
        assert model(np.ones((2, steps, 3), "float32")).shape == (2, steps, 4)


def test_config_round_trip(inputs):
    layer = GateLSTM(6, return_sequences=False, go_backwards=True, name="g")
    layer(inputs)
    clone = GateLSTM.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(inputs), layer(inputs), atol=1e-6)
    assert clone.get_config() == layer.get_config()


def test_bidirectional_aligned_and_v1_unaligned(inputs):
    wrapper = bidirectional_gate_lstm(6)
    output = np.asarray(wrapper(inputs))
    assert output.shape == (3, 5, 12)
    forward_weights = wrapper.forward_layer.get_weights()
    backward_weights = wrapper.backward_layer.get_weights()
    forward, _, _ = reference_lstm(inputs.astype(np.float64), *forward_weights)
    backward_raw, _, _ = reference_lstm(inputs[:, ::-1].astype(np.float64), *backward_weights)
    # Aligned: position t holds the backward stream's state for step t.
    assert np.abs(output[..., :6] - forward).max() < 1e-5
    assert np.abs(output[..., 6:] - backward_raw[:, ::-1]).max() < 1e-5
    # v1: the backward stream concatenated as produced (step L-1-t at position t).
    unaligned = np.asarray(FlipBackwardHalf(6)(output))
    assert np.abs(unaligned[..., 6:] - backward_raw).max() < 1e-5


def test_bidirectional_survives_serialization(tmp_path, inputs):
    model_input = keras.Input((None, 4))
    model = keras.Model(
        model_input, bidirectional_gate_lstm(3, return_sequences=False)(model_input)
    )
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(inputs), model(inputs), atol=1e-6)


def test_rejects_bad_units():
    with pytest.raises(ValueError, match="units must be a positive integer, got 0"):
        GateLSTM(0)


def test_masked_steps_keep_the_state_as_the_numpy_reference_on_each_prefix(inputs):
    lengths = [5, 3, 1]
    mask = np.arange(5)[None, :] < np.asarray(lengths)[:, None]
    layer = GateLSTM(6, return_state=True)
    sequence, h, c = (np.asarray(t) for t in layer(inputs, mask=mask))
    for patient, length in enumerate(lengths):
        expected, h_ref, c_ref = reference_lstm(
            inputs[patient : patient + 1, :length].astype(np.float64), *layer.get_weights()
        )
        assert np.abs(sequence[patient, :length] - expected[0]).max() < 1e-5
        assert (sequence[patient, length:] == 0).all()
        assert np.abs(h[patient] - h_ref[0]).max() < 1e-5
        assert np.abs(c[patient] - c_ref[0]).max() < 1e-5


def test_bidirectional_with_padding_equals_each_patient_alone(inputs):
    lengths = [5, 2]
    padded = inputs[:2].copy()
    padded[1, 2:] = -1.0
    model_in = keras.Input((None, 4))
    masked = keras.layers.Masking(-1.0)(model_in)
    layer = bidirectional_gate_lstm(3, return_sequences=False)
    model = keras.Model(model_in, layer(masked))
    together = np.asarray(model(padded))
    alone = np.asarray(model(inputs[1:2, :2]))  # no padding at all
    assert np.abs(together[1] - alone[0]).max() < 1e-5
    assert lengths[0] == padded.shape[1]
