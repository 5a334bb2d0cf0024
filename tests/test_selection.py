"""The released generator is the best snapshot by a validation split of the training patients."""

import json

import numpy as np
from conftest import TINY_CONFIG

from hg_keras.config import builtin_config_path, load_config
from hg_keras.evaluation.evaluate import discriminative
from hg_keras.holdout import MIN_VALIDATION, load_training_cohort
from hg_keras.sampling import TrainedRun
from hg_keras.selection import BEST, BEST_PAIR, STATE, BestSnapshot, check_epochs
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


class Drifting(BestSnapshot):
    """Scripted scores; records both networks and the learning rate at each snapshot."""

    scores = [0.3, 0.1, 0.4, 0.2]
    seen = []

    def score(self, generator):
        Drifting.seen.append(
            {
                "generator": generator.get_weights(),
                "critic": self.model.critic.get_weights(),
                "rates": [F32(o.learning_rate) for o in self.model.optimizers],
                "model": self.model,
            }
        )
        return self.scores[len(Drifting.seen) - 1]


def F32(value):
    """A learning rate as its float32 variable holds it."""
    return float(np.float32(value))


def _equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_snapshot_far_worse_than_the_best_rolls_both_networks_back_and_halves_the_rates(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("hg_keras.training.BestSnapshot", Drifting)
    Drifting.seen = []
    config = _config(
        tmp_path, patients=48, validation=MIN_VALIDATION, checks=3, epochs=3, rollback=0.2
    )
    out = tmp_path / "run"
    train(config, out=out, verbose=0)  # scores 0.3, 0.1, then 0.4: more than 0.1 + 0.2
    best, drifted = Drifting.seen[1], Drifting.seen[2]
    model = drifted["model"]
    assert [s["rates"] for s in Drifting.seen] == [[F32(1e-3)] * 2] * 3
    assert not _equal(drifted["critic"], best["critic"])
    assert _equal(model.critic.get_weights(), best["critic"])
    assert _equal(model.generator.get_weights(), best["generator"])
    assert [F32(o.learning_rate) for o in model.optimizers] == [F32(5e-4)] * 2
    state = json.loads((out / "checkpoint" / STATE).read_text())
    assert [c.get("rolled_back", False) for c in state["checks"]] == [False, False, True]

    # A resumed run goes on from the rolled-back state: the halved rates and the best weights.
    train(None, out=out, resume=True, epochs=4, verbose=0)
    assert Drifting.seen[3]["rates"] == [F32(5e-4)] * 2
    assert Drifting.seen[3]["model"] is not model


def test_no_rollback_within_the_margin(tmp_path, monkeypatch):
    monkeypatch.setattr("hg_keras.training.BestSnapshot", Drifting)
    Drifting.seen = []
    config = _config(
        tmp_path, patients=48, validation=MIN_VALIDATION, checks=3, epochs=3, rollback=0.5
    )
    train(config, out=tmp_path / "run", verbose=0)  # 0.4 is within 0.1 + 0.5
    model = Drifting.seen[2]["model"]
    assert [F32(o.learning_rate) for o in model.optimizers] == [F32(1e-3)] * 2
    assert _equal(model.critic.get_weights(), Drifting.seen[2]["critic"])
    assert (tmp_path / "run" / "checkpoint" / BEST_PAIR).exists()


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
