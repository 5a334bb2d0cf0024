"""--where parsing and the static groups a conditional run draws from."""

import numpy as np
import pytest
from cohorts import IRREGULAR_CONFIG, irregular_cohort

from hg_keras.conditions import group_table, length_table, parse_where
from hg_keras.config import Config
from hg_keras.data.cohort import validate_cohort
from hg_keras.data.transforms import CohortTransformer
from hg_keras.errors import InputError
from hg_keras.files import read_yaml


@pytest.fixture
def transformer(tmp_path):
    path = tmp_path / "irregular.yaml"
    path.write_text(IRREGULAR_CONFIG)
    schema = Config.from_dict(read_yaml(path)).schema
    frame = validate_cohort(irregular_cohort(patients=80, seed=2), schema)
    return CohortTransformer(schema).fit(frame), frame


def test_where_takes_labels_or_codes_and_several_conditions(transformer):
    schema = transformer[0].schema
    assert parse_where(["Sex=Female"], schema) == {"Sex": 1}
    assert parse_where(["Sex=female, Site=3"], schema) == {
        "Sex": 1,
        "Site": 3,
    }
    assert parse_where(["Sex=0", "Site=South"], schema) == {"Sex": 0, "Site": 2}


@pytest.mark.parametrize(
    "text, message",
    [
        ("Sex", "expected NAME=VALUE"),
        ("HR=80", "'HR' is not a static binary or categorical variable"),
        ("Age=50", "'Age' is not a static binary or categorical variable"),
        ("Vaso=1", "'Vaso' is not a static"),
        ("Site=West", r"'West' is not a level of Site \(1=North, 2=South, 3=East\)"),
    ],
)
def test_bad_where_is_one_clear_error(transformer, text, message):
    with pytest.raises(InputError, match=message):
        parse_where([text], transformer[0].schema)


def test_groups_follow_training_frequencies_and_filter_by_where(transformer):
    fitted, frame = transformer
    table, probabilities = group_table(fitted)
    first = frame.groupby("PatientID")[["Sex", "Site"]].first()
    assert len(table) == len(first.drop_duplicates())
    assert probabilities.sum() == pytest.approx(1)
    # One-hot rows: Sex (2 levels) then Site (3 levels).
    assert table.shape[1] == 5 and (table.sum(axis=1) == 2).all()
    female, share = group_table(fitted, {"Sex": 1})
    assert (female[:, 1] == 1).all() and share.sum() == pytest.approx(1)
    expected = first[first["Sex"] == 1]["Site"].value_counts(normalize=True).sort_index()
    np.testing.assert_allclose(share, expected.to_numpy())


def test_unseen_group_is_refused(transformer):
    fitted, _ = transformer
    (sex, site), _ = fitted.static_groups[0]
    fitted.static_groups = fitted.static_groups[1:]  # as if nobody had that group
    with pytest.raises(InputError, match=f"no training patient has Sex={sex} and Site={site}"):
        group_table(fitted, {"Sex": sex, "Site": site})


def test_length_table_is_the_training_length_distribution(transformer):
    fitted, frame = transformer
    lengths, probabilities = length_table(fitted)
    counts = frame.groupby("PatientID").size().value_counts(normalize=True).sort_index()
    np.testing.assert_array_equal(lengths, counts.index)
    np.testing.assert_allclose(probabilities, counts.to_numpy())


def _patient_medians(cohort, column):
    """Per patient (sorted by id): the static Ethnic code and the median of `column`."""
    ethnic, values = {}, {}
    for patient, ethnic_code, value in cohort[["PatientID", "Ethnic", column]].to_numpy():
        ethnic[patient] = ethnic_code
        values.setdefault(patient, []).append(value)
    patients = sorted(values)
    return (
        np.array([ethnic[p] for p in patients]),
        np.array([np.median(values[p]) for p in patients]),
    )
