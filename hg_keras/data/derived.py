"""Derived columns: what the networks see besides the cohort's own values.

Two schema options add columns the networks model like any other and that
are turned back into the cohort's shape when decoding:

* ``missing: indicator`` on a variable adds a binary ``<name>_observed``
  channel (1 observed, 0 missing) and fills the value itself (forward within
  the patient, then backward, then the training median), so NaNs never reach
  the networks. Decoding puts NaN back wherever the channel says missing.
  Such a fill repeats the previous step wherever the channel is 0, so the
  modelled schema declares the value ``carried_when`` its channel is 0
  (:func:`hg_keras.data.schema.modelled_variables`) and the generator's
  output obeys the same rule.
* ``irregular_time: true`` adds ``<time>_gap``, the time since the previous
  visit (the first visit's gap is its own time, counted from 0). Decoding
  turns gaps back into times by a cumulative sum per patient.
"""

import dataclasses

import numpy as np

from hg_keras.data.schema import gap_name, indicator_name
from hg_keras.errors import InputError

# detect_carried: a flag must carry in this many rows at least, and the value
# repeat in under this share of the rows the flag leaves alone.
MIN_CARRIED_ROWS = 5
MAX_FREE_REPEATS = 0.5


def detect_carried(frame, schema):
    """`schema` with ``carried_when`` added wherever `frame` carries a numeric forward.

    A time-varying numeric without a rule is declared carried under the first
    time-varying binary flag and code (schema order) for which it repeats the
    previous step of its patient exactly in every such row (at least
    :data:`MIN_CARRIED_ROWS`), while it repeats in under
    :data:`MAX_FREE_REPEATS` of the other rows: a persistent value that
    seldom changes anyway is not mistaken for a carried one.

    Args:
        frame: long-format cohort sorted by patient and time (the training patients).
        schema: :class:`Schema`.

    Returns:
        (schema, found): the schema with the rules added, and a list of
        ``(name, flag, code)`` for each rule found.
    """
    same_patient = frame[schema.id].eq(frame[schema.id].shift()).to_numpy()
    flags = [v for v in schema.variables if v.kind == "binary" and not v.static]
    found, variables = [], []
    for variable in schema.variables:
        if (
            variable.is_numeric
            and not variable.static
            and not variable.carried_when
            and variable.missing == "error"
        ):
            values = frame[variable.name].to_numpy(dtype=np.float64)
            repeats = same_patient & (values == np.roll(values, 1))
            for flag in flags:
                column = frame[flag.name].to_numpy()
                for code in flag.codes:
                    carried = same_patient & (column == code)
                    free = same_patient & ~carried
                    if (
                        carried.sum() >= MIN_CARRIED_ROWS
                        and repeats[carried].all()
                        and repeats[free].mean() < MAX_FREE_REPEATS
                    ):
                        variable = dataclasses.replace(variable, carried_when=(flag.name, code))
                        found.append((variable.name, flag.name, code))
                        break
                if variable.carried_when:
                    break
        variables.append(variable)
    return dataclasses.replace(schema, variables=tuple(variables)), found


def fill_values(frame, schema):
    """Training medians of the variables with an indicator (the last-resort fill)."""
    medians = {}
    for variable in schema.variables:
        if variable.missing != "indicator":
            continue
        observed = frame[variable.name].dropna()
        if observed.empty:
            raise InputError(f"column '{variable.name}': every value is missing; nothing to model")
        if variable.is_numeric:
            medians[variable.name] = float(observed.median())
        else:
            medians[variable.name] = int(observed.mode().iloc[0])
    return medians


def to_model_frame(frame, schema, fills):
    """Adds the derived columns and fills indicator variables; returns a new frame.

    Args:
        frame: long-format cohort sorted by patient and time.
        schema: :class:`Schema`.
        fills: dict name -> fill value of last resort (:func:`fill_values`).
    """
    if not schema.derived:
        return frame
    frame = frame.copy()
    by_patient = frame.groupby(schema.id, sort=False)
    for variable in schema.variables:
        if variable.missing != "indicator":
            continue
        values = frame[variable.name]
        frame[indicator_name(variable.name)] = values.notna().astype(np.int64)
        filled = by_patient[variable.name].ffill()
        filled = filled.groupby(frame[schema.id], sort=False).bfill()
        frame[variable.name] = filled.fillna(fills[variable.name])
    if schema.irregular_time:
        times = frame[schema.time].astype(np.float64)
        previous = times.groupby(frame[schema.id], sort=False).shift(1).fillna(0.0)
        gaps = times - previous
        if (gaps < 0).any():
            row = int(np.flatnonzero((gaps < 0).to_numpy())[0])
            raise InputError(
                f"column '{schema.time}', row {row + 2}: irregular_time needs times of 0 or "
                f"more, got {times.iloc[row]}"
            )
        frame[gap_name(schema)] = gaps
    return frame


def from_model_frame(frame, schema, integer_time=True):
    """Inverse of :func:`to_model_frame`: NaN where unobserved, times from gaps.

    Args:
        integer_time: round reconstructed times to integers (the training
            times were integers).
    """
    if not schema.derived:
        return frame
    frame = frame.copy()
    for variable in schema.variables:
        if variable.missing != "indicator":
            continue
        flag = indicator_name(variable.name)
        unobserved = frame[flag].to_numpy() == 0
        column = frame[variable.name].astype(np.float64)
        column[unobserved] = np.nan
        frame[variable.name] = column
        frame = frame.drop(columns=flag)
    if schema.irregular_time:
        gaps = frame.pop(gap_name(schema)).astype(np.float64)
        times = gaps.groupby(frame[schema.id], sort=False).cumsum()
        frame[schema.time] = np.round(times).astype(np.int64) if integer_time else times
    return frame[list(schema.columns)]
