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


def test_detect_group_effects_finds_a_group_that_differs_and_none_in_the_embedded_cohort(
    art_schema,
):
    import scipy.stats

    from hg_keras.conditions import detect_group_effects
    from hg_keras.data import load_cohort

    cohort = load_cohort(patients=400)
    # The simulator draws Gender and Ethnic independently of everything else.
    differ, p, _ = detect_group_effects(cohort, art_schema)
    assert not differ and 0 < p <= 1
    # Caucasian patients' CD4 raised by half: that and only that is the finding.
    shifted = cohort.copy()
    caucasian = shifted["Ethnic"] == 3
    shifted.loc[caucasian, "CD4"] *= 1.5
    differ, p, where = detect_group_effects(shifted, art_schema)
    assert differ and where == ("Ethnic", "CD4")
    ethnic, medians = _patient_medians(shifted, "CD4")
    counts = {code: (ethnic == code).sum() for code in np.unique(ethnic)}
    tested = [medians[ethnic == code] for code, n in counts.items() if n >= 5]
    assert p == pytest.approx(scipy.stats.kruskal(*tested).pvalue, rel=1e-9)
    # A time-varying discrete variable: female patients all missing their visits' drug record.
    drugs = cohort.copy()
    drugs.loc[drugs["Gender"] == 2, "Drug (M)"] = 1
    differ, _, where = detect_group_effects(drugs, art_schema)
    assert differ and where[0] == "Gender" and where[1].startswith("Drug (M)=")


def test_detect_group_effects_on_a_schema_with_lengths_levels_and_missing_values(transformer):
    from hg_keras.conditions import detect_group_effects

    # irregular_cohort's heart rate is 10 higher for Sex=1; its Lactate has gaps (NaN).
    schema = transformer[0].schema
    frame = transformer[1]
    differ, p, where = detect_group_effects(frame, schema)
    assert differ and where == ("Sex", "HR") and p < 1e-3
    same = frame.copy()
    same["HR"] = 80.0
    assert detect_group_effects(same, schema)[2] != ("Sex", "HR")
