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

import numpy as np

from hg_keras.data.schema import gap_name, indicator_name
from hg_keras.errors import InputError


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
