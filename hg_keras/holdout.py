"""Which patients a run trains on, and which it holds out.

The split is a function of the config (``training.patients``,
``training.holdout``, ``training.validation``, ``training.seed``) and the
cohort, so training, sampling's copy check and the run's evaluation all
recompute the same one.
"""

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from hg_keras.config import load_config
from hg_keras.data.cohort import load_cohort, validate_cohort
from hg_keras.errors import InputError

# The fewest validation patients the snapshot judge is given; fewer keep the last generator.
MIN_VALIDATION = 20

# How messages and run.json name a cohort given as a DataFrame: a run keeps
# no copy of it, so using it again (resume, copy check, evaluation) needs it again.
IN_MEMORY = "<DataFrame>"


def cohort_name(data):
    """How messages name a cohort: its path, the DataFrame, or the embedded cohort."""
    if isinstance(data, pd.DataFrame):
        return IN_MEMORY
    return str(data) if data is not None else "the embedded cohort"


def load_training_cohort(config, data=None, with_holdout=False, with_validation=False):
    """The training patients, and optionally the held-out and validation ones.

    A user's cohort first loses its holdout (``training.holdout``: a
    fraction or a count of patients, drawn by the training seed within each
    group of static discrete attributes), then trains on the first
    ``training.patients`` of the rest, by id (all of them, if fewer). The embedded cohort has far
    more patients than a CPU run uses, so its holdout is the patients that
    follow the training ones (as many, never trained on). Last,
    ``training.validation`` of the training patients are drawn the same way
    for choosing the released generator (:func:`validation_ids`); the
    training frame never holds them.

    Args:
        config: :class:`Config`.
        data: path of a CSV/Parquet cohort, a DataFrame in the config's
            schema (checked like a file), or None for the embedded cohort.
        with_holdout: bool, also return the holdout frame (None when
            ``training.holdout`` is 0 or no patient is left for it).
        with_validation: bool, also return (last) the validation frame
            (None without a validation split).
    """
    if data is None and config.schema.without_carry() != load_config("art4hiv").schema:
        raise InputError(
            "the embedded cohort is ART for HIV; this config's schema needs --data PATH "
            "(a CSV or Parquet cohort in that schema)"
        )
    schema = config.schema
    if isinstance(data, str) and data == IN_MEMORY:
        raise InputError(
            "this run trained on a DataFrame in memory; pass that DataFrame again "
            "(Synthesizer.fit(frame) / data=frame)"
        )
    if isinstance(data, pd.DataFrame):
        frame = validate_cohort(data, schema, source=IN_MEMORY)
    else:
        frame = load_cohort(data, schema if data else None)
    source = cohort_name(data)
    lengths = frame.groupby(schema.id, sort=False).size()
    if lengths.nunique() > 1 and not schema.variable_length:
        raise InputError(
            f"{source}: patients have {lengths.min()} to {lengths.max()} time steps but the "
            "schema says lengths: fixed; set 'lengths: variable' in the schema to model that"
        )
    ids = frame[schema.id].unique()
    holdout = config.training.holdout
    held = np.array([], dtype=ids.dtype)
    if data is not None and holdout:
        ids, held = split_holdout(frame, schema, ids, holdout, config.training.seed, source)
    # training.patients is a cap: a smaller cohort trains on every patient it has.
    wanted = min(config.training.patients or len(ids), len(ids))
    if data is None and holdout:
        held = ids[wanted : 2 * wanted]
    ids = ids[:wanted]
    checked = validation_ids(frame, config, ids, source)
    train_frame = frame[frame[schema.id].isin(np.setdiff1d(ids, checked))].reset_index(drop=True)
    result = [train_frame]
    if with_holdout:
        holdout_frame = frame[frame[schema.id].isin(held)].reset_index(drop=True)
        result.append(holdout_frame if len(held) else None)
    if with_validation:
        validation = frame[frame[schema.id].isin(checked)].reset_index(drop=True)
        result.append(validation if len(checked) else None)
    return result[0] if len(result) == 1 else tuple(result)


def validation_ids(frame, config, ids, source):
    """The ids of `ids` kept out of training to choose the generator (maybe none).

    ``training.validation`` of them, drawn like the holdout; none when that
    is 0 or would give fewer than :data:`MIN_VALIDATION` patients, or leave
    fewer than that many to train on.
    """
    share = config.training.validation
    count = int(round(share * len(ids))) if share < 1 else int(share)
    if not share or count < MIN_VALIDATION or len(ids) - count < MIN_VALIDATION:
        return ids[:0]
    # Its own seed stream: the holdout's draw with the same seed must not repeat.
    seed = config.training.seed + 1
    return split_holdout(frame, config.schema, ids, count, seed, source)[1]


def split_holdout(frame, schema, ids, holdout, seed, source):
    """(training ids, holdout ids), the holdout drawn within static groups."""

    count = int(round(holdout * len(ids))) if holdout < 1 else int(holdout)
    if not 1 <= count <= len(ids) - 1:
        raise InputError(
            f"{source}: training.holdout {holdout:g} would hold out {count} of {len(ids)} "
            "patients; it must leave at least one for training and hold out at least one "
            "(or be 0 to train on every patient)"
        )
    static = [v.name for v in schema.variables if v.static and not v.is_numeric]
    groups = None
    if static:
        first = frame.groupby(schema.id, sort=False)[static].first().loc[ids]
        groups = first.astype(str).agg("|".join, axis=1).to_numpy()
        # Groups too small to be split both ways are pooled; if that is
        # still too few, the draw is not stratified.
        sizes = dict(zip(*np.unique(groups, return_counts=True)))
        groups = np.array([g if sizes[g] >= 2 else "rare" for g in groups])
        levels, counts = np.unique(groups, return_counts=True)
        if counts.min() < 2 or len(levels) > min(count, len(ids) - count):
            groups = None
    train_ids, held = train_test_split(ids, test_size=count, random_state=seed, stratify=groups)
    order = {patient: k for k, patient in enumerate(ids)}
    return np.array(sorted(train_ids, key=order.get)), np.array(sorted(held, key=order.get))
