import numpy as np
import pandas as pd
import pytest

from hg_keras.data import load_cohort
from hg_keras.errors import InputError


@pytest.fixture(scope="module")
def good():
    return load_cohort(patients=3).head(120)


def write(tmp_path, frame, name="cohort.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def expect_error(path, schema, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        load_cohort(path, schema)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_valid_csv_and_parquet_load_identically(tmp_path, good, art_schema):
    from_csv = load_cohort(write(tmp_path, good), art_schema)
    good.to_parquet(tmp_path / "c.parquet")
    from_parquet = load_cohort(tmp_path / "c.parquet", art_schema)
    pd.testing.assert_frame_equal(from_csv, good.reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(from_parquet, from_csv, check_dtype=False)


def test_unsorted_rows_are_sorted(tmp_path, good, art_schema):
    shuffled = good.sample(frac=1.0, random_state=0)
    loaded = load_cohort(write(tmp_path, shuffled), art_schema)
    np.testing.assert_array_equal(loaded["PatientID"], good["PatientID"])
    np.testing.assert_array_equal(loaded["Timestep"], good["Timestep"])
    np.testing.assert_allclose(loaded["VL"], good["VL"])


def test_missing_column(tmp_path, good, art_schema):
    path = write(tmp_path, good.drop(columns=["CD4"]))
    message = expect_error(path, art_schema, "missing column")
    assert "cohort.csv" in message and "'CD4'" in message


def test_extra_column(tmp_path, good, art_schema):
    path = write(tmp_path, good.assign(Notes="x"))
    expect_error(path, art_schema, "unexpected column\\(s\\) 'Notes'")


def test_unknown_code(tmp_path, good, art_schema):
    bad = good.copy()
    bad.loc[5, "Gender"] = 3
    expect_error(
        write(tmp_path, bad),
        art_schema,
        "column 'Gender' row 6: unknown code 3 \\(expected one of 1, 2\\)",
    )


def test_text_in_numeric_column(tmp_path, good, art_schema):
    bad = good.astype({"CD4": object})
    bad.loc[7, "CD4"] = "high"
    expect_error(
        write(tmp_path, bad), art_schema, "column 'CD4' row 8: value 'high' is not a number"
    )


def test_value_boxcox_cannot_take(tmp_path, good, art_schema):
    bad = good.copy()
    bad.loc[2, "VL"] = -5.0
    expect_error(
        write(tmp_path, bad),
        art_schema,
        "column 'VL' row 3: value -5.0 cannot be Box-Cox transformed",
    )


def test_missing_value_where_forbidden(tmp_path, good, art_schema):
    bad = good.copy()
    bad.loc[4, "Rel CD4"] = np.nan
    expect_error(write(tmp_path, bad), art_schema, "column 'Rel CD4' row 5: missing value")


def test_carried_values_must_repeat_under_their_flag(tmp_path, art_schema):
    from conftest import carrying

    schema = carrying(art_schema)
    cohort = load_cohort(patients=40)  # the embedded cohort carries forward exactly
    flagged = np.flatnonzero((cohort["VL (M)"] == 1).to_numpy())
    assert flagged.size
    loaded = load_cohort(write(tmp_path, cohort.sample(frac=1.0, random_state=1)), schema)
    pd.testing.assert_frame_equal(loaded, cohort, check_dtype=False)

    row = flagged[0]
    broken = cohort.copy()
    broken.loc[row, "VL"] = broken.loc[row, "VL"] * 2 + 1
    patient, month = broken.loc[row, "PatientID"], broken.loc[row, "Timestep"]
    message = expect_error(
        write(tmp_path, broken, "broken.csv"), schema, "carried_when {VL \\(M\\): 1}"
    )
    assert f"column 'VL' at PatientID={patient}, Timestep={month}" in message
    assert "remove carried_when" in message
    # The same file fits the schema without the rule.
    load_cohort(tmp_path / "broken.csv", art_schema)


def test_duplicate_patient_time(tmp_path, good, art_schema):
    bad = pd.concat([good, good.iloc[[10]]])
    expect_error(
        write(tmp_path, bad),
        art_schema,
        "duplicate rows for PatientID=0, Timestep=10 \\(rows 11 and 121\\)",
    )


def test_empty_file(tmp_path, art_schema):
    path = tmp_path / "empty.csv"
    path.write_text("")
    expect_error(path, art_schema, "empty.csv: empty file")
    path.write_text(",".join(art_schema.columns) + "\n")
    expect_error(path, art_schema, "empty file, expected at least one data row")


def test_missing_file_and_wrong_type(tmp_path, art_schema):
    expect_error(tmp_path / "nope.csv", art_schema, "nope.csv: no such file")
    expect_error(tmp_path / "data.xlsx", art_schema, "unsupported file type '.xlsx'")


def test_garbage_parquet(tmp_path, art_schema):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    expect_error(path, art_schema, "bad.parquet: cannot parse as parquet")


def test_embedded_cohort_shape_codes_and_static(art_schema):
    frame = load_cohort()
    assert frame.shape == (8916 * 60, 15)
    assert tuple(frame.columns) == art_schema.columns
    for variable in art_schema.variables:
        if not variable.is_numeric:
            assert set(frame[variable.name].unique()) <= set(variable.codes), variable.name
    per_patient = frame.groupby("PatientID")[["Gender", "Ethnic"]].nunique()
    assert (per_patient == 1).all().all()
    female = (frame.groupby("PatientID")["Gender"].first() == 2).mean()
    assert 0.12 < female < 0.16
    assert frame["VL"].between(0.1015, 97566.4).all()
    assert frame["CD4"].between(7.9, 42475.2).all()
    flagged = frame[["VL (M)", "CD4 (M)", "Drug (M)"]].mean()
    assert ((flagged > 0.005) & (flagged < 0.1)).all()
    pd.testing.assert_frame_equal(load_cohort(patients=50), frame[frame.PatientID < 50])


def test_embedded_cohort_has_dynamics():
    frame = load_cohort(patients=2000)
    switches = frame.groupby("PatientID")["Base Drug Combo"].diff().fillna(0) != 0
    assert 0.002 < switches.mean() < 0.05
    # VL falls after months of suppression start: CD4 is higher where VL stays low.
    log_vl = np.log10(frame["VL"])
    suppressed = frame.assign(s=log_vl < 2.3).groupby("PatientID")["s"].mean() > 0.8
    last_cd4 = frame[frame.Timestep == 59].set_index("PatientID")["CD4"]
    assert last_cd4[suppressed].median() > 1.5 * last_cd4[~suppressed].median()
