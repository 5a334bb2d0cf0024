import re

import pytest

from hg_keras.config import load_config
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


def test_quick_config_extends_paper_config(art_config):
    quick = load_config("quick")
    assert quick.schema == art_config.schema
    assert quick.training.patients == 1024
    assert art_config.training.batch_size == 256 and art_config.training.epochs == 200


def test_paper_config_stays_v1_exactly(art_config):
    """Every realism lever is off in art4hiv.yaml: v1's networks, losses and draws."""
    model, training = art_config.model, art_config.training
    assert (model.latent_dim, model.hidden_units, model.latent_distribution) == (
        128,
        128,
        "uniform",
    )
    assert model.patient_latent_dim == 0 and not model.step_scores and not model.conditional
    assert model.discrete_output == "argmax"
    assert training.marginal_weight == 0 and training.temporal_weight == 0
    assert training.critic_learning_rate is None and not training.straight_through
    assert (training.critic_steps, training.correlation_weight) == (5, 10.0)
    assert (training.learning_rate, training.beta_1, training.beta_2) == (1e-3, 0.9, 0.99)
