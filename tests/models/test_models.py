import keras
import numpy as np
import pytest

from hg_keras.data import FeatureLayout, Schema
from hg_keras.models import Critic, Generator


def v1_worked_example_schema():
    """The 22-column schema of Health Gym v1's worked example (reference 2)."""
    cat = {"kind": "categorical"}
    return Schema.from_dict(
        {
            "id": "PatientID",
            "time": "Timestep",
            "variables": [
                {"name": "VL", "kind": "numeric"},
                {"name": "CD4", "kind": "numeric"},
                {"name": "Gender", "kind": "binary", "levels": {1: "M", 2: "F"}},
                {"name": "Ethnic", **cat, "levels": dict(enumerate("abcd"))},
                {"name": "Base Drug Combo", **cat, "levels": dict(enumerate("abcdef"))},
                {"name": "Extra PI", **cat, "levels": dict(enumerate("abcdef"))},
                {"name": "Extra pk-En", "kind": "binary", "levels": {0: "F", 1: "T"}},
            ],
        }
    )


def test_parameter_counts_match_health_gym_v1():
    features = FeatureLayout(v1_worked_example_schema()).spec()
    assert features["width"] == 22
    assert Generator(features).count_params() == 316_438
    assert Critic(features).count_params() == 283_465


def test_parameter_counts_for_full_art4hiv_schema(art_schema):
    features = FeatureLayout(art_schema).spec()
    # biLSTM 2*(128*512+512+128*512+512) + Dense 256*128+128 + 128*128+128 + 128*37+37.
    assert Generator(features).count_params() == 264_192 + 32_896 + 16_512 + 4_773
    # Embeddings 116 + Dense 33*128+128 + 128*128+128 + biLSTM 264,192 + 256+1.
    assert Critic(features).count_params() == 116 + 4_352 + 16_512 + 264_192 + 257


@pytest.fixture(scope="module")
def features(art_schema):
    return FeatureLayout(art_schema).spec()


def test_generator_outputs_valid_rows_and_static_attributes(features):
    generator = Generator(features, latent_dim=4, hidden_units=8)
    y = np.asarray(generator(np.random.default_rng(0).random((3, 6, 4)).astype("float32")))
    assert y.shape == (3, 6, 37)
    assert ((y[..., :3] > 0) & (y[..., :3] < 1)).all()
    for start, end, _ in features["blocks"]:
        np.testing.assert_allclose(y[..., start:end].sum(-1), 1.0, rtol=1e-5)
    static = y[..., features["static_columns"]]
    assert np.ptp(static, axis=1).max() < 1e-6
    treatment = y[..., 9:15]
    assert np.ptp(treatment, axis=1).max() > 1e-4


def test_v1_static_head_lets_attributes_vary(features):
    generator = Generator(features, latent_dim=4, hidden_units=8, static_head="v1")
    y = np.asarray(generator(np.random.default_rng(0).random((3, 6, 4)).astype("float32")))
    assert np.ptp(y[..., features["static_columns"]], axis=1).max() > 1e-4


def test_generator_and_critic_save_and_load(tmp_path, features):
    generator = Generator(features, latent_dim=4, hidden_units=8, align_backward=False)
    critic = Critic(features, hidden_units=8)
    z = np.random.default_rng(1).random((2, 5, 4)).astype("float32")
    for model, x in ((generator, z), (critic, np.asarray(generator(z)))):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
        assert loaded.get_config() == model.get_config()


def test_critic_scores_any_length(features):
    critic = Critic(features, hidden_units=8)
    for steps in (1, 4):
        assert critic(np.zeros((2, steps, 37), "float32")).shape == (2, 1)


def test_masked_critic_scores_a_padded_patient_as_if_alone(art_schema):
    features = FeatureLayout(art_schema).spec()
    keras.utils.set_random_seed(0)
    critic = Critic(features, hidden_units=8, masked=True)
    patient = np.random.default_rng(0).random((1, 3, features["width"])).astype("float32")
    padded = np.concatenate([patient, np.full((1, 4, features["width"]), -1.0, "float32")], 1)
    np.testing.assert_allclose(critic(padded), critic(patient), rtol=1e-5)


def test_conditional_generator_outputs_exactly_the_given_static_levels(art_schema, tmp_path):
    layout = FeatureLayout(art_schema)
    columns = layout.condition_columns  # Gender (2) then Ethnic (4)
    generator = Generator(
        layout.spec(), latent_dim=4, hidden_units=8, masked=True, condition_columns=columns
    )
    noise = np.random.default_rng(1).random((2, 5, 4)).astype("float32")
    noise[1, 3:] = -1.0  # the second patient has 3 steps
    condition = np.array([[0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 0]], "float32")
    output = np.asarray(generator([noise, condition]))
    np.testing.assert_array_equal(output[:, :, list(columns)], np.repeat(condition[:, None], 5, 1))
    generator.save(tmp_path / "g.keras")
    restored = keras.models.load_model(tmp_path / "g.keras")
    assert restored.conditional and restored.masked
    np.testing.assert_allclose(restored([noise, condition]), output, rtol=1e-6)
