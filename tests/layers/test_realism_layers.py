"""The realism layers against NumPy references of what they compute."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hg_keras.layers import CarryForward, PatientLatent, SequenceScore, SlowNoise


def test_patient_latent_holds_month_zero_channels_for_every_month():
    noise = np.random.default_rng(0).random((3, 5, 6)).astype("float32")
    out = np.asarray(PatientLatent(2)(noise))
    expected = noise.copy()
    expected[:, :, :2] = noise[:, :1, :2]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.asarray(PatientLatent(0)(noise)), noise)


def test_patient_latent_round_trips_and_refuses_bad_sizes():
    layer = PatientLatent.from_config(PatientLatent(3, name="p").get_config())
    assert layer.dims == 3
    with pytest.raises(ValueError, match="dims must be a non-negative integer"):
        PatientLatent(-1)


def test_slow_noise_is_the_ar1_recursion_on_its_channels_only():
    noise = np.random.default_rng(1).random((2, 7, 5)).astype("float32")
    out = np.asarray(SlowNoise(2, start=1, memory=0.6)(noise))
    e = (noise[..., 1:3] - 0.5) * np.sqrt(12.0)
    s = np.empty_like(e)
    s[:, 0] = e[:, 0]
    for t in range(1, 7):
        s[:, t] = 0.6 * s[:, t - 1] + np.sqrt(1 - 0.36) * e[:, t]
    np.testing.assert_allclose(out[..., 1:3], s, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[..., [0, 3, 4]], noise[..., [0, 3, 4]])


def test_slow_noise_has_unit_variance_and_the_set_lag_correlation():
    noise = np.random.default_rng(2).normal(size=(4000, 12, 1)).astype("float32")
    s = np.asarray(SlowNoise(1, memory=0.8, distribution="normal")(noise))[..., 0]
    assert s[:, -1].var() == pytest.approx(1.0, abs=0.06)
    assert np.corrcoef(s[:, 5], s[:, 8])[0, 1] == pytest.approx(0.8**3, abs=0.04)
    layer = SlowNoise.from_config(SlowNoise(3, 2, 0.5, name="s").get_config())
    assert (layer.dims, layer.start, layer.memory) == (3, 2, 0.5)
    with pytest.raises(ValueError, match="memory must be in"):
        SlowNoise(1, memory=1.0)


def reference_carry(x, carried, hard):
    """Month by month: a governed column keeps last month's value with the flag's weight."""
    y = x.copy()
    for start, end, *flags in carried:
        for t in range(1, x.shape[1]):
            p = sum(x[:, t, f : f + 1] for f in flags)
            if hard:
                p = (p > 0.5).astype(x.dtype)
            y[:, t, start:end] = p * y[:, t - 1, start:end] + (1 - p) * x[:, t, start:end]
    return y


def carry_inputs(seed=3):
    """Two numerics, a 3-level block, two binary flags (one-hot pairs at 5:7 and 7:9)."""
    rng = np.random.default_rng(seed)
    x = rng.random((4, 9, 9)).astype("float32")
    x[..., 5] = rng.random((4, 9)) < 0.4  # drawn flag: 0 or 1 exactly
    x[..., 6] = 1 - x[..., 5]
    x[..., 7] = rng.random((4, 9))  # soft flag
    x[..., 8] = 1 - x[..., 7]
    return x


CARRIED = [[0, 1, 5], [2, 5, 7]]  # numeric 0 under flag 5:7, block 2:5 under flag 7:9
# Numeric 1 under a flag held by two levels of a compound (columns 6 and 8 here).
SUMMED = [[1, 2, 6, 8]]


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("carried", [CARRIED, SUMMED], ids=["one column", "summed columns"])
def test_carry_forward_matches_month_by_month_reference(hard, carried):
    x = carry_inputs()
    if carried is SUMMED:
        x[..., 6] *= 0.5  # two levels of one distribution: their sum is at most 1
        x[..., 8] *= 0.5
    layer = CarryForward(carried, hard=hard)
    want = reference_carry(x, carried, hard)
    np.testing.assert_allclose(np.asarray(layer(x)), want, atol=1e-6)
    # Inside a graph with unknown patients and months, as the SavedModel runs it.
    graph = tf.function(layer, input_signature=[tf.TensorSpec([None, None, 9])])
    np.testing.assert_allclose(graph(x).numpy(), want, atol=1e-6)


def test_carry_forward_repeats_exactly_under_a_drawn_flag():
    x = carry_inputs()
    y = np.asarray(CarryForward(CARRIED, hard=True)(x))
    flagged = x[:, 1:, 5] == 1
    np.testing.assert_array_equal(y[:, 1:, 0][flagged], y[:, :-1, 0][flagged])
    np.testing.assert_array_equal(y[:, 1:, 0][~flagged], x[:, 1:, 0][~flagged])
    np.testing.assert_array_equal(y[:, 0], x[:, 0])  # month 0 has nothing to carry
    np.testing.assert_array_equal(y[..., 1], x[..., 1])  # ungoverned columns untouched
    np.testing.assert_array_equal(y[..., 5:], x[..., 5:])


def test_carry_forward_gradient_is_finite_and_reaches_the_flag():
    x = tf.constant(carry_inputs())
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(CarryForward(CARRIED)(x) ** 2)
    gradient = tape.gradient(loss, x).numpy()
    assert np.isfinite(gradient).all()
    assert np.abs(gradient[:, 1:, 7]).max() > 0  # the soft flag learns from the carried values


def test_carry_forward_round_trips_and_refuses_a_flag_inside_its_block():
    layer = CarryForward.from_config(CarryForward(CARRIED, hard=True, name="c").get_config())
    assert layer.carried == CARRIED and layer.hard
    for bad in ([[2, 5, 3]], [[2, 5, 7, 4]], [[2, 5]]):
        with pytest.raises(ValueError, match="is not \\[start, end, \\*flag columns\\]"):
            CarryForward(bad)


def reference_score(sequence, mask, units, final_kernel, final_bias, step_kernel, step_bias):
    scores = []
    for x, m in zip(sequence, mask):
        real = x[m]
        final = np.concatenate([real[-1, :units], x[0, units:]])
        per_month = (real @ step_kernel + step_bias).mean()
        scores.append(final @ final_kernel + final_bias + per_month)
    return np.array(scores)


@pytest.mark.parametrize("masked", [False, True])
def test_sequence_score_is_final_states_plus_mean_month_score(masked):
    rng = np.random.default_rng(1)
    units, steps = 3, 5
    sequence = rng.normal(size=(4, steps, 2 * units)).astype("float32")
    lengths = np.array([5, 3, 1, 4]) if masked else np.full(4, steps)
    mask = np.arange(steps)[None] < lengths[:, None]
    layer = SequenceScore(units)
    out = layer(sequence, mask=mask if masked else None)
    final_kernel, final_bias = (w.numpy() for w in layer.final.weights)
    step_kernel, step_bias = (w.numpy() for w in layer.steps.weights)
    expected = reference_score(
        sequence, mask, units, final_kernel[:, 0], final_bias[0], step_kernel[:, 0], step_bias[0]
    )
    np.testing.assert_allclose(np.asarray(out)[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_critic_with_step_scores_round_trips(art_schema):
    from hg_keras.data import FeatureLayout
    from hg_keras.models import Critic

    features = FeatureLayout(art_schema).spec()
    critic = Critic(features, hidden_units=4, step_scores=True)
    x = np.random.default_rng(2).random((2, 3, features["width"])).astype("float32")
    clone = Critic.from_config(critic.get_config())
    clone.set_weights(critic.get_weights())
    np.testing.assert_allclose(np.asarray(critic(x)), np.asarray(clone(x)), rtol=1e-6)
    assert critic(x).shape == (2, 1)
    # v1's critic plus one Dense(2 * units -> 1) for the month scores.
    plain = Critic(features, hidden_units=4)
    assert critic.count_params() == plain.count_params() + 2 * 4 + 1
    assert isinstance(
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(critic.get_layer("score"))
        ),
        SequenceScore,
    )
