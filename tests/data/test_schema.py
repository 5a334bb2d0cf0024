import dataclasses
import re

import pytest

from hg_keras.config import ModelConfig, TrainingConfig, load_config
from hg_keras.data.schema import Schema
from hg_keras.data.transforms import FeatureLayout
from hg_keras.errors import InputError


def test_art4hiv_schema_matches_public_file(art_schema):
    assert art_schema.columns == (
        "VL",
        "CD4",
        "Rel CD4",
        "Gender",
        "Ethnic",
        "Base Drug Combo",
        "Comp. INI",
        "Comp. NNRTI",
        "Extra PI",
        "Extra pk-En",
        "VL (M)",
        "CD4 (M)",
        "Drug (M)",
        "PatientID",
        "Timestep",
    )
    assert art_schema.variable("Gender").levels == ((1, "Male"), (2, "Female"))
    assert art_schema.variable("Ethnic").codes == (1, 2, 3, 4)
    assert art_schema.variable("Base Drug Combo").codes == tuple(range(6))
    assert art_schema.variable("Extra PI").labels[-1] == "Not Applied"
    assert [v.name for v in art_schema.variables if v.static] == ["Gender", "Ethnic"]
    assert all(v.transform == "boxcox" for v in art_schema.variables if v.is_numeric)


def test_schema_round_trips_through_dict(art_schema):
    assert Schema.from_dict(art_schema.to_dict()) == art_schema


@pytest.mark.parametrize(
    "variables, message",
    [
        ([{"name": "A", "kind": "numerc"}], "kind 'numerc' is not one of"),
        (
            [{"name": "A", "kind": "numeric", "transfrom": "boxcox"}],
            "unknown key 'transfrom'; did you mean 'transform'?",
        ),
        (
            [{"name": "A", "kind": "binary", "levels": {0: "a", 1: "b", 2: "c"}}],
            "exactly 2 levels, got 3",
        ),
        ([{"name": "A", "kind": "categorical"}], "needs 'levels'"),
        (
            [{"name": "A", "kind": "numeric"}, {"name": "A", "kind": "numeric"}],
            "column 'A' is listed twice",
        ),
        ([{"name": "A", "kind": "categorical", "levels": {"x": "a"}}], "must be an integer"),
    ],
)
def test_bad_schema_entries_are_named(variables, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("?", r"\?")):
        Schema.from_dict({"id": "id", "time": "t", "variables": variables})


FLAG = {"name": "M", "kind": "binary", "levels": {0: "False", 1: "True"}}


@pytest.mark.parametrize(
    "carried_when, flag, message",
    [
        ({"M": 1, "N": 1}, FLAG, "one 'flag column: code' pair"),
        ("M", FLAG, "one 'flag column: code' pair"),
        ({"M": "yes"}, FLAG, "code for 'M' must be an integer"),
        ({"Q": 1}, FLAG, "'Q' is not another variable"),
        ({"A": 1}, FLAG, "'A' is not another variable"),
        ({"M": 2}, FLAG, "code 2 is not a level of 'M' (codes: 0, 1)"),
        ({"M": 1}, {**FLAG, "static": True}, "'M' must be a time-varying binary"),
        ({"M": 1}, {"name": "M", "kind": "numeric"}, "'M' must be a time-varying binary"),
    ],
)
def test_bad_carried_when_is_named(carried_when, flag, message):
    variables = [{"name": "A", "kind": "numeric", "carried_when": carried_when}, flag]
    with pytest.raises(InputError, match=re.escape(message)):
        Schema.from_dict({"id": "id", "time": "t", "variables": variables})


def test_carried_when_round_trips_and_locates_its_flag_level():
    schema = Schema.from_dict(
        {
            "id": "id",
            "time": "t",
            "variables": [
                {"name": "A", "kind": "numeric", "carried_when": {"M": 1}},
                {"name": "C", "kind": "categorical", "levels": {5: "x", 7: "y"}},
                {"name": "B", "kind": "numeric"},
                {"name": "M", "kind": "binary", "levels": {1: "True", 0: "False"}},
                {
                    "name": "D",
                    "kind": "categorical",
                    "levels": {0: "u", 1: "v", 2: "w"},
                    "carried_when": {"M": 0},
                },
            ],
        }
    )
    assert schema.variable("A").carried_when == ("M", 1)
    assert Schema.from_dict(schema.to_dict()) == schema
    # Encoded: A, B, C_0, C_1, M_0 (code 1), M_1 (code 0), D_0..D_2.
    assert FeatureLayout(schema).carried == ([0, 1, 4], [6, 9, 5])


def test_config_unknown_key_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("extends: x.yaml\n")
    with pytest.raises(InputError, match="no such file"):
        load_config(path)
    from hg_keras.config import builtin_config_path

    path.write_text(f"extends: {builtin_config_path('art4hiv')}\ntraining:\n  epohcs: 3\n")
    with pytest.raises(InputError, match="unknown key 'epohcs'; did you mean 'epochs'"):
        load_config(path)


def test_broken_yaml_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("schema: [unclosed\n")
    with pytest.raises(InputError, match=r"broken YAML at line \d"):
        load_config(path)


def test_quick_config_is_the_defaults_on_the_embedded_schema(art_config):
    quick = load_config("quick")
    assert quick.schema == art_config.schema
    assert quick.training.patients == 1024
    assert quick.model == ModelConfig()
    assert dataclasses.replace(quick.training, patients=None) == TrainingConfig()


# Health Gym v1's value of every config field (Kuo et al. 2022; the seed's
# code). align_backward and static_head are the two fixes art4hiv.yaml keeps.
V1 = {
    "model": {
        "latent_dim": 128,
        "latent_distribution": "uniform",
        "hidden_units": 128,
        "patient_latent_dim": 0,
        "slow_noise_dim": 0,
        "slow_noise_memory": 0.8,
        "align_backward": True,
        "static_head": "pooled",
        "step_scores": False,
        "numeric_margin": 0.0,
        "discrete_output": "argmax",
        "conditional": False,
        "carry_forward": "declared",
    },
    "training": {
        "patients": None,
        "holdout": 0.2,
        "validation": 0,
        "checks": 6,
        "updates": None,
        "epochs": 200,
        "minutes": None,
        "batch_size": 256,
        "curriculum": (10, 20, 30, 40, 50, 60),
        "critic_steps": 5,
        "gradient_penalty_weight": 10.0,
        "alignment": {"correlation": 10.0},
        "learning_rate": 1e-3,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "rebalance": False,
        "privacy": None,
        "seed": 42,
    },
}


def test_paper_config_pins_every_field_to_v1(art_config):
    """A field added to the config without a v1 value here, or a pin that drifts, fails."""
    for section, kind in (("model", ModelConfig), ("training", TrainingConfig)):
        fields = [f.name for f in dataclasses.fields(kind)]
        assert sorted(fields) == sorted(V1[section]), section
        values = getattr(art_config, section)
        for name in fields:
            assert getattr(values, name) == V1[section][name], f"{section}.{name}"


def test_paper_yaml_names_every_field(art_config):
    """art4hiv.yaml pins each field itself, so a change of the defaults leaves it v1."""
    from hg_keras.config import builtin_config_path
    from hg_keras.files import read_yaml

    pinned = read_yaml(builtin_config_path("art4hiv"))
    for section in ("model", "training"):
        assert sorted(pinned[section]) == sorted(V1[section]), section
