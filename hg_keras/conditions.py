"""What a synthetic patient is drawn with: its length and its static attributes.

A variable-length run draws each patient's number of steps from the training
lengths; a conditional run draws each patient's static group (e.g. Gender x
Ethnic) from the training groups, or only from those matching ``--where``
conditions such as ``Gender=Female``. The group is given to the generator
(trained with it), not filtered afterwards.
"""

import numpy as np

from hg_keras.errors import InputError


def parse_where(conditions, schema):
    """``["Gender=Female", "Ethnic=4"]`` -> ``{"Gender": 2, "Ethnic": 4}`` (codes).

    A condition names a static binary or categorical variable and one of its
    labels or codes; several may be given, also comma-separated in one string.

    Raises:
        InputError: unknown variable, a non-static or numeric one, or an unknown value.
    """
    static = {v.name: v for v in schema.static_discrete}
    chosen = {}
    for text in conditions or ():
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name or not value:
                raise InputError(f"--where '{part}': expected NAME=VALUE, e.g. Gender=Female")
            if name not in static:
                names = ", ".join(static) or "none in this schema"
                raise InputError(
                    f"--where '{part}': '{name}' is not a static binary or categorical "
                    f"variable (those are: {names})"
                )
            variable = static[name]
            codes = {label.lower(): code for code, label in variable.levels}
            codes.update({str(code): code for code in variable.codes})
            if value.lower() not in codes:
                levels = ", ".join(f"{code}={label}" for code, label in variable.levels)
                raise InputError(f"--where '{part}': '{value}' is not a level of {name} ({levels})")
            chosen[name] = codes[value.lower()]
    return chosen


def group_table(transformer, where=None):
    """The training's static groups as generator conditions, and their probabilities.

    Args:
        transformer: fitted :class:`CohortTransformer` of a conditional run.
        where: dict name -> code (:func:`parse_where`); only matching groups.

    Returns:
        (float32 array `(groups, condition width)` of one-hot conditions,
        float64 array `(groups,)` of probabilities).

    Raises:
        InputError: no training patient matches `where`.
    """
    variables = transformer.model_schema.static_discrete
    names = [v.name for v in variables]
    rows, counts = [], []
    for codes, count in transformer.static_groups:
        group = dict(zip(names, codes))
        if all(group.get(name) == code for name, code in (where or {}).items()):
            rows.append(np.concatenate([np.equal(v.codes, c) for v, c in zip(variables, codes)]))
            counts.append(count)
    if not rows:
        wanted = " and ".join(f"{k}={v}" for k, v in where.items())
        raise InputError(
            f"no training patient has {wanted}; a conditional generator reproduces the "
            "static groups it was trained on"
        )
    counts = np.asarray(counts, dtype=np.float64)
    return np.asarray(rows, dtype=np.float32), counts / counts.sum()


def length_table(transformer):
    """Training lengths and their probabilities: (int array, float64 array)."""
    lengths = np.asarray(sorted(transformer.length_counts), dtype=np.int32)
    counts = np.asarray([transformer.length_counts[k] for k in lengths], dtype=np.float64)
    return lengths, counts / counts.sum()
