"""Variable lengths, irregular times, missing indicators and static checks in the data layer."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from cohorts import IRREGULAR_CONFIG, irregular_cohort

from hg_keras.config import Config
from hg_keras.data.cohort import validate_cohort
from hg_keras.data.pipeline import correlation_target, curriculum_dataset, patient_weights
from hg_keras.data.schema import Schema
from hg_keras.data.transforms import PAD, CohortTransformer
from hg_keras.errors import InputError
from hg_keras.files import read_yaml


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "irregular.yaml"
    path.write_text(IRREGULAR_CONFIG)
    return Config.from_dict(read_yaml(path))


@pytest.fixture
def frame(config):
    return validate_cohort(irregular_cohort(patients=60, seed=3), config.schema)


def test_schema_options_parse_and_round_trip(config):
    schema = config.schema
    assert schema.variable_length and schema.irregular_time
    assert schema.variable("Lactate").missing == "indicator"
    assert Schema.from_dict(schema.to_dict()) == schema
    modelled = [v.name for v in schema.modelled().variables]
    assert modelled[-2:] == ["Lactate_observed", "Day_gap"]
    assert not schema.modelled().derived


def test_round_trip_restores_lengths_times_and_missing_values(config, frame):
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded, lengths = transformer.encode(frame, dtype=np.float64, return_lengths=True)
    expected = frame.groupby("PatientID").size().to_numpy()
    np.testing.assert_array_equal(lengths, expected)
    assert encoded.shape == (60, expected.max(), transformer.layout.width)
    for patient, length in enumerate(lengths):
        assert (encoded[patient, length:] == PAD).all()
        assert ((encoded[patient, :length] >= 0) & (encoded[patient, :length] <= 1)).all()
    assert not np.isnan(encoded).any()  # NaNs never reach the networks

    decoded = transformer.decode(encoded, patient_ids=frame["PatientID"].unique(), lengths=lengths)
    assert list(decoded.columns) == list(frame.columns)
    np.testing.assert_array_equal(decoded["Day"], frame["Day"])
    np.testing.assert_array_equal(decoded["Lactate"].isna(), frame["Lactate"].isna())
    for name in ("Age", "HR", "Lactate"):
        np.testing.assert_allclose(decoded[name], frame[name], rtol=1e-6)
    for name in ("Sex", "Site", "Vaso"):
        np.testing.assert_array_equal(decoded[name], frame[name])


def test_indicator_fills_forward_then_backward_then_median(config):
    rows = {
        "PatientID": [1, 1, 1, 2, 2],
        "Day": [0, 4, 9, 0, 3],
        "Age": [50.0] * 3 + [60.0] * 2,
        "Sex": [0] * 5,
        "Site": [1] * 5,
        "HR": [80.0] * 5,
        "Lactate": [np.nan, 2.0, np.nan, np.nan, np.nan],
        "Vaso": [0] * 5,
    }
    frame = validate_cohort(pd.DataFrame(rows), config.schema)
    extra = validate_cohort(irregular_cohort(patients=10, seed=1), config.schema)
    extra["PatientID"] += 10
    transformer = CohortTransformer(config.schema).fit(pd.concat([frame, extra]))
    encoded, lengths = transformer.encode(frame, dtype=np.float64, return_lengths=True)
    lactate = transformer.layout.block("Lactate").start
    observed = transformer.layout.block("Lactate_observed")
    values = transformer.unscale("Lactate", encoded[..., lactate])
    # Patient 1: backward fill before the first value, forward fill after it.
    np.testing.assert_allclose(values[0, :3], [2.0, 2.0, 2.0], rtol=1e-9)
    # Patient 2 was never measured: the training median.
    np.testing.assert_allclose(values[1, :2], transformer.fills["Lactate"], rtol=1e-9)
    flags = np.argmax(encoded[..., observed.start : observed.end], axis=-1)
    np.testing.assert_array_equal(flags[0], [0, 1, 0])
    np.testing.assert_array_equal(flags[1, :2], [0, 0])
    # Gaps: time since the previous visit, the first from 0.
    gap = transformer.unscale("Day_gap", encoded[..., transformer.layout.block("Day_gap").start])
    np.testing.assert_allclose(gap[0], [0, 4, 5], atol=1e-6)


def test_indicator_values_are_carried_under_the_missing_channel(config, frame):
    """What ``missing: indicator`` fills is what CarryForward imposes on the generator."""
    transformer = CohortTransformer(config.schema).fit(frame)
    layout = transformer.layout
    lactate, observed = layout.block("Lactate"), layout.block("Lactate_observed")
    assert layout.carried == ([lactate.start, lactate.end, observed.start],)  # level 0: missing
    encoded, lengths = transformer.encode(frame, dtype=np.float64, return_lengths=True)
    missing = encoded[:, 1:, observed.start] == 1
    valid = np.arange(1, encoded.shape[1])[None] < lengths[:, None]
    assert (missing & valid).any()
    values = encoded[..., lactate.start]
    np.testing.assert_array_equal(values[:, 1:][missing & valid], values[:, :-1][missing & valid])
    with pytest.raises(InputError, match="already carried forward under its 'Lactate_observed'"):
        Schema.from_dict(
            {
                "id": "id",
                "time": "t",
                "variables": [
                    {"name": "M", "kind": "binary", "levels": {0: "no", 1: "yes"}},
                    {
                        "name": "Lactate",
                        "kind": "numeric",
                        "missing": "indicator",
                        "carried_when": {"M": 1},
                    },
                ],
            }
        )


def test_detect_carried_finds_what_the_embedded_cohort_carries_and_nothing_else(art_schema):
    from hg_keras.data import load_cohort
    from hg_keras.data.derived import detect_carried

    cohort = load_cohort(patients=64)
    schema, found = detect_carried(cohort, art_schema)
    assert found == [("VL", "VL (M)", 1), ("CD4", "CD4 (M)", 1), ("Rel CD4", "CD4 (M)", 1)]
    assert schema.variable("CD4").carried_when == ("CD4 (M)", 1)
    assert Schema.from_dict(schema.to_dict()) == schema
    # A single flagged month that is not a repeat: VL is no longer carried.
    broken = cohort.copy()
    row = np.flatnonzero((broken["VL (M)"] == 1).to_numpy())[0]
    broken.loc[row, "VL"] += 1.0
    assert [f[0] for f in detect_carried(broken, art_schema)[1]] == ["CD4", "Rel CD4"]
    # A value that seldom changes repeats under every flag: not taken for a carried one.
    steady = cohort.copy()
    steady["VL"] = steady.groupby("PatientID")["VL"].transform("first")
    assert [f[0] for f in detect_carried(steady, art_schema)[1]] == ["CD4", "Rel CD4"]
    # A rule the schema declares is kept as declared.
    declared = dataclasses.replace(
        art_schema,
        variables=tuple(
            dataclasses.replace(v, carried_when=("CD4 (M)", 1)) if v.name == "VL" else v
            for v in art_schema.variables
        ),
    )
    schema, found = detect_carried(cohort, declared)
    assert schema.variable("VL").carried_when == ("CD4 (M)", 1)
    assert [f[0] for f in found] == ["CD4", "Rel CD4"]


def test_fixed_schema_refuses_unequal_lengths_with_the_fix(art_schema):
    from hg_keras.data import load_cohort

    frame = load_cohort(patients=3)
    frame = frame[~((frame["PatientID"] == frame["PatientID"].iloc[0]) & (frame["Timestep"] > 5))]
    transformer = CohortTransformer(art_schema).fit(frame)
    with pytest.raises(InputError, match="set 'lengths: variable' in the schema"):
        transformer.encode(frame)


def test_static_attribute_that_changes_within_a_patient_is_an_input_error(config, frame):
    bad = frame.copy()
    bad.loc[1, "Site"] = 3 if bad.loc[1, "Site"] != 3 else 1
    patient = bad.loc[1, "PatientID"]
    with pytest.raises(InputError, match=f"'Site' is static but PatientID={patient} has several"):
        validate_cohort(bad, config.schema, source="c.csv")


def test_log_transform_inverts_and_refuses_values_it_cannot_take(config, frame):
    data = config.schema.to_dict()
    data["variables"][3]["transform"] = "log"  # HR
    schema = Schema.from_dict(data)
    transformer = CohortTransformer(schema).fit(frame)
    scaled = transformer.scale("HR", frame["HR"])
    assert scaled.min() == pytest.approx(0) and scaled.max() == pytest.approx(1)
    np.testing.assert_allclose(transformer.unscale("HR", scaled), frame["HR"], rtol=1e-9)
    bad = frame.copy()
    bad.loc[4, "HR"] = -2.0
    with pytest.raises(InputError, match=r"row 5: value -2.0 cannot be log\(x \+ 1\) transformed"):
        validate_cohort(bad, schema, source="c.csv")


def test_padded_steps_do_not_count_in_the_correlation_target(config, frame):
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded, lengths = transformer.encode(frame, return_lengths=True)
    rows = np.concatenate([encoded[p, :n] for p, n in enumerate(lengths)]).astype(np.float64)
    expected = np.nan_to_num(np.corrcoef(rows, rowvar=False))
    np.testing.assert_allclose(correlation_target(encoded), expected, atol=1e-5)


def test_rebalancing_weights_make_groups_equally_likely(config, frame):
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = transformer.encode(frame)
    columns = transformer.layout.condition_columns
    weights = patient_weights(encoded, columns)
    groups = [tuple(row) for row in encoded[:, 0, list(columns)]]
    per_group = {}
    for group, weight in zip(groups, weights):
        per_group[group] = per_group.get(group, 0.0) + weight
    assert len(per_group) > 3
    np.testing.assert_allclose(list(per_group.values()), 1 / len(per_group))
    # The dataset draws with those weights: the smallest group shows up far
    # more often than its share of patients.
    rare = min(per_group, key=lambda g: groups.count(g))
    dataset = curriculum_dataset(encoded, (4,), 20, seed=0, epochs=20, weights=weights)
    drawn = [tuple(row) for batch in dataset for row in batch.numpy()[:, 0, list(columns)]]
    assert drawn.count(rare) / len(drawn) > 2 * groups.count(rare) / len(groups)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lengths": "ragged"}, "lengths 'ragged' is not one of fixed, variable"),
        ({"irregular_time": "yes"}, "irregular_time must be true or false, got 'yes'"),
        (
            {"variables_extra": {"name": "Lactate_observed", "kind": "numeric"}},
            "column 'Lactate_observed' clashes with a derived column",
        ),
    ],
)
def test_bad_schema_options_are_named(config, change, message):
    data = config.schema.to_dict()
    extra = change.pop("variables_extra", None)
    data.update(change)
    if extra:
        data["variables"].append(extra)
    with pytest.raises(InputError, match=message):
        Schema.from_dict(data)


@pytest.mark.parametrize(
    "model, training, message",
    [
        (
            {"discrete_output": "mode"},
            {},
            "model.discrete_output must be argmax, sample, persistent or joint",
        ),
        ({"conditional": False}, {"rebalance": True}, "rebalance needs model.conditional: true"),
    ],
)
def test_bad_model_options_are_named(config, model, training, message):
    data = {
        "schema": config.schema.to_dict(),
        "model": {**Config.to_dict(config)["model"], **model},
        "training": {**Config.to_dict(config)["training"], **training},
    }
    with pytest.raises(InputError, match=message):
        Config.from_dict(data)


def test_conditional_without_static_levels_falls_back_to_unconditional(config):
    data = config.to_dict()
    data["schema"]["variables"] = [v for v in data["schema"]["variables"] if not v.get("static")]
    assert data["model"]["conditional"] is True
    assert Config.from_dict(data).model.conditional is False
    data["training"]["rebalance"] = True
    with pytest.raises(InputError, match="training.rebalance needs model.conditional: true and"):
        Config.from_dict(data)


def test_negative_times_cannot_become_gaps(config, frame):
    bad = frame.copy()
    bad.loc[0, "Day"] = -3
    transformer = CohortTransformer(config.schema)
    with pytest.raises(InputError, match=r"column 'Day', row 2: irregular_time needs times of 0"):
        transformer.fit(bad)
