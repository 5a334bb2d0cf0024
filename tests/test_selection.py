"""The released generator is the best snapshot by a validation split of the training patients."""

import json

import numpy as np
from conftest import TINY_CONFIG

from hg_keras.config import builtin_config_path, load_config
from hg_keras.evaluation.evaluate import discriminative
from hg_keras.holdout import MIN_VALIDATION, load_training_cohort
from hg_keras.sampling import TrainedRun
from hg_keras.selection import BEST, STATE, BestSnapshot, check_epochs
from hg_keras.training import train


def test_check_epochs_end_each_equal_part_of_the_budget():
    assert check_epochs(12, 4) == [3, 6, 9, 12]
    assert check_epochs(10, 3) == [4, 7, 10]
    # More checks than epochs: every epoch once.
    assert check_epochs(2, 6) == [1, 2]


def _config(tmp_path, **training):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(base=builtin_config_path("art4hiv")))
    return load_config(path).replace_training(**training)


def test_validation_patients_are_drawn_from_the_training_ones_and_never_trained_on(tmp_path):
    everyone = load_training_cohort(_config(tmp_path, patients=96))
    config = _config(tmp_path, patients=96, validation=0.25)
    train_frame, holdout, validation = load_training_cohort(
        config, None, with_holdout=True, with_validation=True
    )
    ids = {
        name: set(frame["PatientID"])
        for name, frame in (
            ("train", train_frame),
            ("holdout", holdout),
            ("validation", validation),
        )
    }
    assert len(ids["validation"]) == 24 and len(ids["train"]) == 72
    assert ids["train"] | ids["validation"] == set(everyone["PatientID"])
    assert not ids["validation"] & ids["train"] and not ids["validation"] & ids["holdout"]
    # The same config draws the same patients; what the run trains on excludes them.
    again = load_training_cohort(config, None, with_validation=True)[1]
    assert set(again["PatientID"]) == ids["validation"]
    assert set(load_training_cohort(config)["PatientID"]) == ids["train"]


def test_too_few_validation_patients_keep_every_patient_for_training(tmp_path):
    config = _config(tmp_path, patients=64, validation=MIN_VALIDATION - 1)
    frame, validation = load_training_cohort(config, None, with_validation=True)
    assert validation is None and frame["PatientID"].nunique() == 64


class Scripted(BestSnapshot):
    """Scores the snapshots with a fixed sequence and records each one's weights."""

    scores = [0.3, 0.1, 0.4]
    weights = []

    def score(self, generator):
        Scripted.weights.append([w.copy() for w in generator.get_weights()])
        return self.scores[len(Scripted.weights) - 1]


def test_the_run_releases_the_best_scored_snapshot_and_a_resumed_run_keeps_comparing(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("hg_keras.training.BestSnapshot", Scripted)
    Scripted.weights = []
    config = _config(tmp_path, patients=48, validation=MIN_VALIDATION, checks=3, epochs=2)
    out = tmp_path / "run"
    train(config, out=out, verbose=0)  # checks at epochs 1 and 2: scores 0.3, 0.1
    train(None, out=out, resume=True, epochs=3, verbose=0)  # epoch 3 scores 0.4
    state = json.loads((out / "checkpoint" / STATE).read_text())
    assert [c["score"] for c in state["checks"]] == [0.3, 0.1, 0.4]
    assert state["best"]["epoch"] == 2

    import keras

    released = keras.saving.load_model(out / "generator.keras").get_weights()
    for got, want in zip(released, Scripted.weights[1], strict=True):
        np.testing.assert_array_equal(got, want)
    # The last snapshot differs, so the test would see the last one released.
    assert any(not np.array_equal(a, b) for a, b in zip(released, Scripted.weights[2]))
    assert (out / "checkpoint" / BEST).exists()


def test_a_snapshot_is_scored_on_the_patients_sample_would_give(trained_run):
    """What the choice scores is what a user samples: the same patients, the same judge."""
    run = TrainedRun(trained_run)
    everyone = load_training_cohort(run.config.replace_training(patients=96))
    validation = everyone[everyone["PatientID"].isin(everyone["PatientID"].unique()[-24:])]
    choice = BestSnapshot(
        validation, run.transformer, run.config.model, run.months, "unused", seed=3, max_epochs=3
    )
    synthetic = run.sample(24, seed=3)
    want = discriminative(validation, synthetic, run.schema, 3, max_epochs=3)
    assert choice.score(run.generator) == want
    assert 0 <= want <= 0.5
