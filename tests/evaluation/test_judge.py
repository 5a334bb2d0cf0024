"""The judge means the same on every cohort: balanced, converged, beside its floor."""

import numpy as np
import pytest

from hg_keras.data import load_cohort
from hg_keras.evaluation import evaluate, utility

MONTHS = 12


@pytest.fixture(scope="module")
def user_split():
    """A small cohort split 80/20 as ``train`` splits a user's: 96 trained, 24 held out."""
    frame = load_cohort(patients=120)
    frame = frame[frame.Timestep < MONTHS].reset_index(drop=True)
    held = frame.PatientID % 5 == 0
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def shuffled_columns(frame, seed=0):
    """Every clinical column permuted over all rows: no patient, no month order."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for column in frame.columns[2:]:
        out[column] = rng.permutation(frame[column].to_numpy())
    return out


def encoded(*frames):
    from hg_keras.config import load_config
    from hg_keras.data import CohortTransformer

    transformer = CohortTransformer(load_config("art4hiv").schema).fit(frames[0])
    return [transformer.encode(f) for f in frames]


def test_unequal_sets_do_not_score_the_majority_share(user_split):
    """96 real against 24 real patients: a judge that learns the majority share scores
    |96/120 - 0.5| = 0.3; the balanced judge scores within noise of 0."""
    big, small = encoded(*user_split)
    scores = [utility.discriminative_score(small, big, s, max_epochs=30) for s in range(2)]
    assert max(scores) < 0.15, scores


def test_training_patients_score_their_floor_and_a_shuffled_copy_far_above(user_split, art_schema):
    train, held = user_split
    own, _ = evaluate(
        train, train, art_schema, holdout=held, reference="holdout", repeats=1, max_epochs=30
    )
    floor = own["floor"]
    assert floor["patients"] == 96 and floor["tstr_ratio"] == 1.0
    assert abs(own["utility"]["discriminative_score"] - floor["discriminative_score"]) < 0.1
    assert floor["discriminative_score"] < 0.15
    assert own["fidelity"]["ks_mean"] == pytest.approx(floor["ks_mean"])
    assert own["verdicts"]["utility"].startswith("good")

    real, shuffled = encoded(held, shuffled_columns(train))
    score = utility.discriminative_score(real, shuffled, 0, max_epochs=30)
    assert score > floor["discriminative_score"] + 0.15


def test_a_narrow_feature_gives_patients_away_among_wide_ones():
    """Real patients hold one narrow numeric (sd 0.03 on the encoded scale) constant
    over time; synthetic ones redraw it every month from the same marginal. Five
    binary columns (sd 0.5) are the same noise in both. The judge must find
    the narrow cue with the wide columns beside it, as it does alone."""
    rng = np.random.default_rng(0)
    patients, months = 250, MONTHS
    level = 0.5 + 0.03 * rng.standard_normal((patients, 1, 1))
    real_cue = np.repeat(level, months, axis=1)
    fake_cue = 0.5 + 0.03 * rng.standard_normal((patients, months, 1))
    real, fake = (
        np.concatenate([cue, rng.integers(0, 2, (patients, months, 5))], axis=-1)
        for cue in (real_cue, fake_cue)
    )
    alone = utility.discriminative_score(real[..., :1], fake[..., :1], 0, max_epochs=30)
    together = utility.discriminative_score(real, fake, 0, max_epochs=30)
    assert alone > 0.4, alone
    assert together > 0.4, (alone, together)


def test_a_fresh_network_per_seed_is_not_reported_as_retracing():
    """Each predictor traces its step once; TensorFlow counts the traces of
    every network together (they share Keras's code), so a run's evaluation
    warned of retracing to every user."""
    import logging

    import tensorflow as tf

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tf.get_logger().addHandler(handler)
    try:
        x = np.random.default_rng(0).random((30, 4, 3))
        for seed in range(6):
            utility.predictive_scores(x[:10], x[10:20], x[20:], [0], seed=seed, max_epochs=1)
        tf.get_logger().warning("another warning")
    finally:
        tf.get_logger().removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert not [m for m in messages if "retracing" in m]
    assert "another warning" in messages  # the others still reach the user
