"""What a synthetic patient is drawn with: its length and its static attributes.

A variable-length run draws each patient's number of steps from the training
lengths; a conditional run draws each patient's static group (e.g. Gender x
Ethnic) from the training groups, or only from those matching ``--where``
conditions such as ``Gender=Female``. The group is given to the generator
(trained with it), not filtered afterwards. Whether the groups also shape the
time-varying variables is tested on the training patients
(:func:`detect_group_effects`).
"""

import numpy as np
import scipy.stats

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


# detect_group_effects: family-wise significance level of its tests, and the
# fewest patients a static level needs to take part in them.
GROUP_EFFECT_ALPHA = 0.01
MIN_GROUP_PATIENTS = 5


def detect_group_effects(frame, schema, alpha=GROUP_EFFECT_ALPHA):
    """Whether any time-varying variable differs between the static groups of `frame`.

    Each patient is summarised by the median of each time-varying numeric and
    the share of its steps in each level of each time-varying discrete
    variable. For every static binary or categorical variable and every such
    summary, a Kruskal-Wallis test compares the variable's levels (those
    with at least :data:`MIN_GROUP_PATIENTS` patients); the groups differ
    when any test's p-value is under `alpha` divided by the number of tests
    (Bonferroni). A conditional generator given groups that do not differ
    invents differences between them, and a classifier finds them.

    Args:
        frame: long-format cohort (the training patients).
        schema: :class:`Schema`.
        alpha: float, the family-wise significance level.

    Returns:
        (differ, p, (static, summary)): bool, the smallest p-value (1.0 when
        nothing could be tested), and the static variable and summary it came
        from (None when nothing could be tested).
    """
    static = [v.name for v in schema.static_discrete]
    patients = frame.groupby(schema.id, sort=False)
    summaries = {}
    for variable in schema.variables:
        if variable.static:
            continue
        if variable.is_numeric:
            summaries[variable.name] = patients[variable.name].median()
        else:
            for code, label in variable.levels:
                share = frame[variable.name].eq(code).groupby(frame[schema.id], sort=False)
                summaries[f"{variable.name}={label}"] = share.mean()
    groups = patients[static].first()
    tests = []
    for name in static:
        counts = groups[name].value_counts()
        levels = counts.index[counts >= MIN_GROUP_PATIENTS]
        if len(levels) < 2:
            continue
        for summary, values in summaries.items():
            samples = [values[groups[name] == level].dropna().to_numpy() for level in levels]
            samples = [sample for sample in samples if sample.size]
            pooled = np.concatenate(samples) if samples else np.empty(0)
            if len(samples) < 2 or np.all(pooled == pooled[0]):
                continue
            tests.append((scipy.stats.kruskal(*samples).pvalue, (name, summary)))
    if not tests:
        return False, 1.0, None
    p, where = min(tests, key=lambda test: test[0])
    return bool(p < alpha / len(tests)), float(p), where


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
