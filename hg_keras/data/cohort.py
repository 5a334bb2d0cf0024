"""Loading a long-format cohort and checking it against its schema.

Every problem is reported as one :class:`InputError` that names the file,
column, row (1-based data row) and value, and what was expected. Rows are
sorted by (patient, time) when they are not already.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from hg_keras.data.simulate import simulate_art4hiv
from hg_keras.data.transforms import BOXCOX_EPS
from hg_keras.errors import InputError

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


def load_cohort(path=None, schema=None, *, patients=None, seed=0):
    """Loads a cohort table, or simulates the embedded ART-for-HIV cohort.

    Args:
        path: str or Path of a CSV or Parquet file; None simulates the
            embedded stand-in cohort (see :mod:`hg_keras.data.simulate`).
        schema: :class:`Schema`; required with `path`. Defaults to the
            ART-for-HIV schema for the embedded cohort.
        patients: int, number of patients to simulate (embedded cohort only;
            default 8,916).
        seed: int, simulation seed (embedded cohort only).

    Returns:
        DataFrame sorted by (patient, time), columns in schema order.

    Raises:
        InputError: naming the file, column, row and value at fault.
    """
    if path is None:
        return simulate_art4hiv(patients=8916 if patients is None else patients, seed=seed)
    if schema is None:
        raise ValueError("load_cohort(path) needs the schema describing the file")
    return validate_cohort(read_table(path), schema, source=str(path))


def read_table(path):
    """Reads a CSV or Parquet file into a DataFrame with one clear error on failure."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            f"{path}: unsupported file type '{path.suffix}' (expected .csv or .parquet)"
        )
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a .csv or .parquet file")
    try:
        frame = reader(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file, expected a header and at least one row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: cannot parse as {path.suffix[1:]} ({first})") from None
    if frame.empty:
        raise InputError(f"{path}: empty file, expected at least one data row")
    return frame


def load_synthetic(path, schema):
    """Loads another generator's output for scoring: defects are counted, not refused.

    A synthetic table may break the schema in ways that are themselves a
    finding (Health Gym v1's published data changes Gender from month to
    month): codes outside the schema, values a transform cannot take,
    missing values where the schema has none, extra columns. Each is counted
    and repaired so the table can be scored: an unknown code becomes the
    column's most frequent known code, a value below a transform's domain
    its lowest valid value, a forbidden missing value the column's median;
    extra columns are dropped. Static attributes that vary within a patient
    are kept as they are (the evaluation measures them). Missing columns,
    text in numeric columns, duplicate rows and unreadable files remain
    errors.

    Returns:
        (frame, defects): the sorted, validated frame and a dict with
        ``unknown_codes`` and ``invalid_values`` (column -> share of rows
        repaired) and ``extra_columns`` (names dropped).
    """
    frame = read_table(path)
    source = str(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {_quote(missing)} expected by the schema")
    defects = {
        "unknown_codes": {},
        "invalid_values": {},
        "extra_columns": [c for c in frame.columns if c not in schema.columns],
    }
    frame = frame[list(schema.columns)].copy()
    for variable in schema.variables:
        column = _numbers(frame[variable.name], source, variable.name)
        invalid = column.isna() if variable.missing == "error" else column.isna() & False
        if variable.is_numeric:
            floor = {"boxcox": -BOXCOX_EPS, "log": -1.0}.get(variable.transform)
            if floor is not None:
                below = column <= floor
                column = column.mask(below, 0.0 if variable.transform == "boxcox" else floor / 2)
                invalid |= below
            fill = column.median()
        else:
            unknown = column.notna() & ~column.isin(variable.codes)
            known = column[~unknown].dropna()
            fill = known.mode().iloc[0] if len(known) else variable.codes[0]
            column = column.mask(unknown, fill)
            defects["unknown_codes"][variable.name] = float(unknown.mean())
        if variable.missing == "error":
            column = column.fillna(0.0 if pd.isna(fill) else fill)
        defects["invalid_values"][variable.name] = float(invalid.mean())
        frame[variable.name] = column
    return validate_cohort(frame, schema, source, check_rules=False), defects


def validate_cohort(frame, schema, source="cohort", check_rules=True):
    """Checks columns, codes, numbers and keys; returns a sorted copy.

    Args:
        frame: DataFrame, one row per patient per time step.
        schema: :class:`Schema`.
        source: str, the file name used in messages.
        check_rules: bool, refuse a static attribute that varies within a
            patient and a ``carried_when`` value that does not repeat the
            previous step (off for synthetic tables being scored, where
            breaking them is a finding).
    """
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    expected = list(schema.columns)
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {_quote(missing)} expected by the schema")
    extra = [c for c in frame.columns if c not in expected]
    if extra:
        raise InputError(
            f"{source}: unexpected column(s) {_quote(extra)}; the schema lists {_quote(expected)}"
        )
    for key in (schema.id, schema.time):
        frame[key] = _integers(frame[key], source, key)
    for variable in schema.variables:
        column = _numbers(frame[variable.name], source, variable.name)
        _check_missing(column, variable, source)
        if variable.is_numeric:
            floor, name = {"boxcox": (-BOXCOX_EPS, "Box-Cox"), "log": (-1.0, "log(x + 1)")}.get(
                variable.transform, (None, None)
            )
            if floor is not None:
                bad = np.flatnonzero(column.to_numpy() <= floor)
                if bad.size:
                    expected = ">= 0" if variable.transform == "boxcox" else "> -1"
                    raise InputError(
                        f"{source}: column '{variable.name}' row {bad[0] + 1}: value "
                        f"{float(column.iloc[bad[0]])} cannot be {name} transformed "
                        f"(expected a value {expected})"
                    )
        else:
            observed = column.dropna()
            bad = ~observed.isin(variable.codes)
            if bad.any():
                row = observed.index[np.argmax(bad.to_numpy())]
                codes = ", ".join(map(str, variable.codes))
                raise InputError(
                    f"{source}: column '{variable.name}' row {row + 1}: unknown code "
                    f"{_code(observed[row])} (expected one of {codes})"
                )
            if not column.isna().any():
                column = column.astype(np.int64)
        frame[variable.name] = column
    duplicated = frame.duplicated([schema.id, schema.time], keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())[:2] + 1
        patient, step = frame[schema.id].iloc[rows[0] - 1], frame[schema.time].iloc[rows[0] - 1]
        raise InputError(
            f"{source}: duplicate rows for {schema.id}={patient}, "
            f"{schema.time}={step} (rows {rows[0]} and {rows[1]}); "
            "expected one row per patient per time step"
        )
    frame = frame.sort_values([schema.id, schema.time], kind="stable")
    frame = frame.reset_index(drop=True)
    if check_rules:
        _check_static(frame, schema, source)
        _check_carried(frame, schema, source)
    return frame[expected]


def _check_static(frame, schema, source):
    """A static attribute must keep one value within each patient."""
    for variable in schema.variables:
        if not variable.static:
            continue
        values = frame.groupby(schema.id, sort=False)[variable.name].nunique(dropna=True)
        varying = values[values > 1]
        if len(varying):
            patient = varying.index[0]
            seen = frame.loc[frame[schema.id] == patient, variable.name].dropna().unique()[:3]
            raise InputError(
                f"{source}: column '{variable.name}' is static but {schema.id}={patient} has "
                f"several values ({', '.join(str(_code(v)) for v in seen)}); expected one "
                "value per patient"
            )


def _check_carried(frame, schema, source):
    """A ``carried_when`` value repeats the previous step of its patient wherever
    its flag says so: the generator will be made to, so the data must."""
    same_patient = frame[schema.id].eq(frame[schema.id].shift()).to_numpy()
    for variable in schema.variables:
        if not variable.carried_when:
            continue
        flag, code = variable.carried_when
        values = frame[variable.name].to_numpy(dtype=np.float64)
        previous = np.roll(values, 1)
        carried = same_patient & (frame[flag].to_numpy() == code)
        repeated = np.isclose(values, previous, rtol=1e-9, atol=0.0, equal_nan=True)
        bad = np.flatnonzero(carried & ~repeated)
        if bad.size:
            row = frame.iloc[bad[0]]
            raise InputError(
                f"{source}: column '{variable.name}' at {schema.id}={_code(row[schema.id])}, "
                f"{schema.time}={_code(row[schema.time])}: carried_when {{{flag}: {code}}} "
                f"expects the previous step's value {_code(previous[bad[0]])}, got "
                f"{_code(values[bad[0]])} (remove carried_when if values are not carried forward)"
            )


def _quote(names):
    return ", ".join(f"'{n}'" for n in names)


def _code(value):
    return int(value) if float(value).is_integer() else value


def _numbers(column, source, name):
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise InputError(
            f"{source}: column '{name}' row {row + 1}: value {column.iloc[row]!r} is not a number"
        )
    infinite = np.isinf(numbers.to_numpy(dtype=np.float64))
    if infinite.any():
        row = int(np.argmax(infinite))
        raise InputError(f"{source}: column '{name}' row {row + 1}: value is infinite")
    return numbers.astype(np.float64)


def _integers(column, source, name):
    numbers = _numbers(column, source, name)
    if numbers.isna().any():
        row = int(np.argmax(numbers.isna().to_numpy()))
        raise InputError(
            f"{source}: column '{name}' row {row + 1}: missing value, expected an integer"
        )
    fractional = numbers != np.round(numbers)
    if fractional.any():
        row = int(np.argmax(fractional.to_numpy()))
        raise InputError(
            f"{source}: column '{name}' row {row + 1}: value {float(numbers.iloc[row])} "
            "is not an integer"
        )
    return numbers.astype(np.int64)


def _check_missing(column, variable, source):
    if variable.missing == "error" and column.isna().any():
        row = int(np.argmax(column.isna().to_numpy()))
        raise InputError(
            f"{source}: column '{variable.name}' row {row + 1}: missing value "
            "(the schema says missing: error; use missing: allow to keep NaN)"
        )
