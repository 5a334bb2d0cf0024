"""Private training: DP-SGD on the critic, its accountant, and what a private run ships."""

import json
import math
import struct
import zipfile

import dp_accounting
import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from hg_keras.config import Config
from hg_keras.data.schema import Schema
from hg_keras.data.transforms import PAD, CohortTransformer, renewal_rate, switch_share
from hg_keras.errors import InputError
from hg_keras.evaluation.privacy import membership_auc
from hg_keras.export import export_run
from hg_keras.losses import gradient_penalty
from hg_keras.models import Critic
from hg_keras.privacy import (
    ORDERS,
    RELEASE_BINS,
    ReleasedMarginals,
    allowed_steps,
    calibrate,
    calibrate_release,
    clip_and_noise,
    gaussian_noise,
    noised_marginals,
    patient_marginals,
    per_patient_gradients,
    release_marginals,
    spent_epsilon,
)
from hg_keras.sampling import TrainedRun
from hg_keras.training import train

PRIVATE_CONFIG = """
schema:
  id: pid
  time: t
  variables:
    - {name: Age, kind: numeric, static: true, transform: minmax, bounds: [18, 90]}
    - {name: Sex, kind: binary, static: true, levels: {0: M, 1: F}}
    - {name: HR, kind: numeric, transform: log, bounds: [30, 200]}
    - {name: Drug, kind: binary, levels: {0: "No", 1: "Yes"}}
model: {latent_dim: 8, patient_latent_dim: 4, slow_noise_dim: 2, hidden_units: 8}
training:
  batch_size: 16
  updates: 10
  critic_steps: 1
  holdout: 0
  privacy: {epsilon: 3}
"""


def private_cohort(path, patients=60, steps=4, seed=0):
    """A fixed-length cohort inside PRIVATE_CONFIG's bounds, written to `path`: each
    patient has an age, a sex, a heart-rate level and a drug they mostly stay on."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        age, sex, hr = rng.uniform(20, 85), int(rng.random() < 0.5), rng.normal(80, 10)
        drug = rng.random() < 0.3
        for t in range(steps):
            rows.append(
                {
                    "pid": p,
                    "t": t,
                    "Age": age,
                    "Sex": sex,
                    "HR": hr + rng.normal(0, 3),
                    "Drug": int(drug != (rng.random() < 0.1)),
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


def private_config(**training):
    data = yaml.safe_load(PRIVATE_CONFIG)
    data["training"].update(training)
    return Config.from_dict(data)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    path = tmp_path_factory.mktemp("private") / "cohort.csv"
    return path, private_cohort(path)


@pytest.fixture(scope="module")
def private_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("private") / "run"
    return train(private_config(), data=str(cohort[0]), out=out, verbose=0)


# DP-SGD pieces against independent computations


def test_per_patient_gradients_match_single_patient_tapes_and_clip_to_the_norm():
    keras.utils.set_random_seed(0)
    features = {
        "numeric_width": 2,
        "blocks": [[2, 4, 2]],
        "static_columns": [],
        "width": 4,
    }
    critic = Critic(features, hidden_units=4, step_scores=True)
    real = tf.random.uniform([5, 3, 4])
    fake = tf.random.uniform([5, 3, 4])
    alpha = tf.random.uniform([5, 1, 1])
    per_patient, _ = per_patient_gradients(critic, real, fake, alpha, 10.0)
    loop = []
    for i in range(5):
        with tf.GradientTape() as tape:
            loss = (
                critic(fake[i : i + 1])[0, 0]
                - critic(real[i : i + 1])[0, 0]
                + 10.0
                * gradient_penalty(critic, real[i : i + 1], fake[i : i + 1], alpha[i : i + 1])
            )
        loop.append([g.numpy() for g in tape.gradient(loss, critic.trainable_variables)])
    for k in range(len(loop[0])):
        np.testing.assert_allclose(
            per_patient[k].numpy(), np.stack([g[k] for g in loop]), rtol=1e-4, atol=1e-6
        )

    clip = 0.5
    norms = np.array([math.sqrt(sum(float(np.sum(g**2)) for g in grads)) for grads in loop])
    assert (norms > clip).any(), "the test needs a patient above the clipping norm"
    zeros = [tf.zeros(v.shape) for v in critic.trainable_variables]
    private, got_norms = clip_and_noise(per_patient, clip, zeros, 1.0)
    np.testing.assert_allclose(got_norms.numpy(), norms, rtol=1e-4)
    clipped = [[g * min(1.0, clip / n) for g in grads] for grads, n in zip(loop, norms)]
    for grads in clipped:
        assert math.sqrt(sum(float(np.sum(g**2)) for g in grads)) <= clip * (1 + 1e-5)
    for k in range(len(loop[0])):
        np.testing.assert_allclose(
            private[k].numpy(), sum(g[k] for g in clipped), rtol=1e-4, atol=1e-6
        )


def test_noise_has_the_configured_scale():
    variables = [tf.zeros([200, 50]), tf.zeros([100])]
    multiplier, clip, batch = 1.7, 0.8, 32.0
    noise = gaussian_noise(variables, multiplier, key=12345, step=7)
    zeros = [tf.zeros([0, *v.shape]) for v in variables]
    private, _ = clip_and_noise(zeros, clip, noise, batch)
    draws = np.concatenate([g.numpy().ravel() for g in private])
    assert abs(draws.std() / (multiplier * clip / batch) - 1) < 0.03
    assert abs(draws.mean()) < 0.05 * multiplier * clip / batch
    other = gaussian_noise(variables, multiplier, key=12345, step=8)
    assert not np.allclose(other[0].numpy(), noise[0].numpy())


@pytest.mark.parametrize("critic_steps", [1, 3])
def test_accountant_equals_dp_accounting_directly(critic_steps):
    rate, sigma, steps, delta = 0.05, 1.3, 400, 1e-5
    accountant = dp_accounting.rdp.RdpAccountant(ORDERS)
    gaussian = dp_accounting.GaussianDpEvent(sigma / math.sqrt(critic_steps))
    accountant.compose(dp_accounting.PoissonSampledDpEvent(rate, gaussian), steps)
    expected = accountant.get_epsilon(delta)
    assert spent_epsilon(sigma, rate, steps, critic_steps, delta) == pytest.approx(expected)

    noise = calibrate(2.0, delta, rate, steps, critic_steps)
    assert spent_epsilon(noise, rate, steps, critic_steps, delta) <= 2.0
    assert spent_epsilon(noise * 0.98, rate, steps, critic_steps, delta) > 2.0
    limit = allowed_steps(noise, rate, critic_steps, 2.0, delta, steps)
    assert limit >= steps
    assert spent_epsilon(noise, rate, limit + 1, critic_steps, delta) > 2.0


def test_the_release_and_the_updates_are_accounted_together():
    rate, steps, delta, release = 0.05, 400, 1e-5, 8.0
    accountant = dp_accounting.rdp.RdpAccountant(ORDERS)
    accountant.compose(dp_accounting.GaussianDpEvent(release))
    gaussian = dp_accounting.GaussianDpEvent(1.3)
    accountant.compose(dp_accounting.PoissonSampledDpEvent(rate, gaussian), steps)
    expected = accountant.get_epsilon(delta)
    assert spent_epsilon(1.3, rate, steps, 1, delta, release) == pytest.approx(expected)
    alone = dp_accounting.rdp.RdpAccountant(ORDERS)
    alone.compose(dp_accounting.GaussianDpEvent(release))
    assert spent_epsilon(1.3, rate, 0, 1, delta, release) == pytest.approx(alone.get_epsilon(delta))
    # Calibrated for a share, the release spends it; the updates get what is left.
    noise = calibrate_release(0.6, delta)
    assert spent_epsilon(1.0, rate, 0, 1, delta, noise) == pytest.approx(0.6, abs=1e-3)
    sigma = calibrate(2.0, delta, rate, steps, 1, noise)
    assert spent_epsilon(sigma, rate, steps, 1, delta, noise) <= 2.0
    assert sigma > calibrate(2.0, delta, rate, steps, 1)


# The released marginals


def test_each_patients_marginals_are_a_loop_over_its_steps_of_norm_at_most_one():
    rng = np.random.default_rng(0)
    patients, steps = 7, 5
    numeric = rng.uniform(0, 1, (patients, steps, 2))
    numeric[0, :, 0] = 1.0  # the upper edge falls in the last bin
    levels = rng.integers(0, 3, (patients, steps))
    encoded = np.concatenate([numeric, np.eye(3)[levels]], axis=2)
    got = patient_marginals(encoded, 2, [(2, 5)])
    for p in range(patients):
        parts = []
        for column in range(2):
            histogram = np.zeros(RELEASE_BINS)
            for t in range(steps):
                histogram[min(int(numeric[p, t, column] * RELEASE_BINS), RELEASE_BINS - 1)] += 1
            parts.append(histogram / steps)
        parts.append(np.bincount(levels[p], minlength=3) / steps)
        np.testing.assert_allclose(got[p], np.concatenate(parts) / np.sqrt(3))
    assert np.linalg.norm(got, axis=1).max() <= 1.0 + 1e-12
    # A patient whose every value sits in one bin reaches the bound.
    constant = np.concatenate([np.full((1, steps, 2), 0.5), np.eye(3)[[0] * steps][None]], 2)
    assert np.linalg.norm(patient_marginals(constant, 2, [(2, 5)])) == pytest.approx(1.0)


def test_switch_shares_are_a_loop_over_transitions_and_give_the_datas_renewal_rate():
    rng = np.random.default_rng(2)
    patients, steps = 9, 6
    levels = rng.integers(0, 3, (patients, steps))
    levels[0] = 1  # never switches
    encoded = np.concatenate([rng.uniform(0, 1, (patients, steps, 1)), np.eye(3)[levels]], 2)
    encoded[1, 1:] = PAD  # one step: no transition
    encoded[2, 4:] = PAD
    got = patient_marginals(encoded, 1, [(1, 4)], dynamic=[(1, 4)])[:, -2:] * np.sqrt(3)
    for p in range(patients):
        length = int(np.sum(np.any(encoded[p] != PAD, axis=-1)))
        changes = [levels[p, t] != levels[p, t - 1] for t in range(1, length)]
        want = [0.0, 0.0] if not changes else [1 - np.mean(changes), np.mean(changes)]
        np.testing.assert_allclose(got[p], want)
    assert np.linalg.norm(patient_marginals(encoded, 1, [(1, 4)], [(1, 4)]), axis=1).max() <= 1
    # Without noise, on patients of one length, the released rate is the data's.
    frame = pd.DataFrame({"pid": np.repeat(np.arange(patients), steps), "code": levels.ravel()})
    full = np.concatenate([np.zeros((patients, steps, 1)), np.eye(3)[levels]], 2)
    released = release_marginals(full, 1, [(1, 4)], noise=0.0, key=0, dynamic=[(1, 4)])
    assert released.renewal_rates() == [pytest.approx(renewal_rate(frame, "code", "pid"))]
    assert released.switch_rates() == [pytest.approx(switch_share(frame, "code", "pid"))]
    assert ReleasedMarginals.from_dict(json.loads(json.dumps(released.to_dict()))) == released


def test_the_release_adds_noise_of_its_scale_and_keeps_the_cohorts_shares():
    rng = np.random.default_rng(1)
    encoded = np.concatenate(
        [rng.beta(2, 5, (4000, 3, 1)), np.eye(2)[(rng.random((4000, 3)) < 0.3).astype(int)]],
        axis=2,
    )
    summed = patient_marginals(encoded, 1, [(1, 3)]).sum(axis=0)
    noise = np.stack(
        [noised_marginals(encoded, 1, [(1, 3)], 2.5, key) - summed for key in range(200)]
    )
    assert abs(noise.std() / 2.5 - 1) < 0.03 and abs(noise.mean()) < 0.05
    released = release_marginals(encoded, 1, [(1, 3)], noise=2.5, key=3)
    np.testing.assert_allclose(released.histograms[1], [0.7, 0.3], atol=0.02)
    true = summed[:RELEASE_BINS] / summed[:RELEASE_BINS].sum()
    np.testing.assert_allclose(released.histograms[0], true, atol=0.01)
    np.testing.assert_allclose(released.shares(3), [0, *released.histograms[1]])
    # The quantile function against NumPy's quantiles of the pooled values.
    true = np.quantile(encoded[..., 0], [0.1, 0.5, 0.9])
    np.testing.assert_allclose(released.quantiles()[[25, 128, 230], 0], true, atol=0.03)
    assert ReleasedMarginals.from_dict(json.loads(json.dumps(released.to_dict()))) == released
    # Noise that swamps a part leaves it uniform, not undefined.
    key = next(
        k for k in range(100) if (noised_marginals(encoded[:0], 1, [(1, 3)], 1, k) < 0)[-2:].all()
    )
    assert release_marginals(encoded[:0], 1, [(1, 3)], 1, key).histograms[1] == (0.5, 0.5)


# Runs


def test_private_run_records_its_guarantee_and_stops_at_the_budget(private_run, cohort):
    info = json.loads((private_run / "run.json").read_text())["privacy"]
    assert info["epsilon"] <= 3.0
    assert info["epsilon"] > 2.5  # the calibration spends what it may
    assert info["delta"] == pytest.approx(1 / 60**1.1)
    assert info["updates"] == 12  # 10 updates round up to whole epochs of 4 batches
    assert info["budget_spent"]
    release = info["released"]["noise"]
    assert info["released"]["terms"] == ["marginal", "tails"]
    assert info["epsilon"] == pytest.approx(
        spent_epsilon(info["noise_multiplier"], 16 / 60, 12, 1, info["delta"], release)
    )
    from hg_keras.evaluation.report import _guarantee

    assert "a release of the cohort's marginals (for marginal, tails) and 12 generator" in (
        _guarantee(info)
    )
    # The release alone spends its share of the target.
    assert spent_epsilon(1.0, 0.1, 0, 1, info["delta"], release) == pytest.approx(0.6, abs=1e-3)
    # Asked for more, the run stops where the budget ends.
    train(resume=True, out=private_run, data=str(cohort[0]), updates=40, verbose=0)
    again = json.loads((private_run / "run.json").read_text())["privacy"]
    assert again["updates"] == 12
    assert again["epsilon"] == pytest.approx(info["epsilon"])


def test_a_resumed_private_run_spends_what_an_uninterrupted_one_does(private_run, cohort, tmp_path):
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    split = train(
        private_config(),
        data=str(cohort[0]),
        out=tmp_path / "split",
        verbose=0,
        callbacks=[StopAfterFirstEpoch()],
    )
    half = json.loads((split / "run.json").read_text())["privacy"]
    released = (split / "checkpoint" / "released.json").read_text()
    train(resume=True, out=split, data=str(cohort[0]), verbose=0)
    # Resumed, the run reuses its release: released once, counted once.
    assert (split / "checkpoint" / "released.json").read_text() == released
    done = json.loads((split / "run.json").read_text())["privacy"]
    whole = json.loads((private_run / "run.json").read_text())["privacy"]
    assert half["updates"] == 3 and half["epsilon"] < whole["epsilon"]
    assert done["updates"] == whole["updates"] == 12
    assert done["epsilon"] == pytest.approx(whole["epsilon"])


MEMORISED_FEATURES = 6
MEMBERS, NON_MEMBERS = 12, 400


def memorisable_config(privacy, seed=4, updates=200):
    """A deliberately overfitted run: 12 patients, each a point of 6 static uniform
    values, all trained, each seen `updates` times."""
    variables = [
        {"name": f"x{i}", "kind": "numeric", "static": True, "transform": "minmax",
         "bounds": [0, 100]}
        for i in range(MEMORISED_FEATURES)
    ]  # fmt: skip
    variables.append({"name": "d", "kind": "binary", "levels": {0: "No", 1: "Yes"}})
    return Config.from_dict(
        {
            "schema": {"id": "pid", "time": "t", "variables": variables},
            "model": {
                "latent_dim": 8,
                "patient_latent_dim": 4,
                "slow_noise_dim": 2,
                "hidden_units": 32,
            },
            "training": {"batch_size": MEMBERS, "updates": updates, "critic_steps": 1, "holdout": 0,
                         "validation": 0, "seed": seed, "privacy": privacy},
        }
    )  # fmt: skip


def uniform_patients(rng, count):
    """`count` patients of 2 steps: 6 static uniform values in [0, 100] and a coin."""
    values = rng.uniform(0, 100, (count, MEMORISED_FEATURES))
    return pd.DataFrame(
        [{"pid": p, "t": t, **{f"x{i}": v for i, v in enumerate(values[p])},
          "d": int(rng.random() < 0.5)} for p in range(count) for t in range(2)]
    )  # fmt: skip


def test_privacy_lowers_the_membership_auc_of_a_run_that_memorises(tmp_path):
    # Independent points in 6 dimensions: a patient outside training is far from
    # every training one, so a generator that reproduces its training patients
    # gives them away to the distance attack. The non-members are fresh draws
    # from the same distribution, many of them, so the AUC of a generator that
    # learned nothing about its patients is 0.5 with a known spread (Mann-Whitney).
    rng = np.random.default_rng(10)
    members, others = uniform_patients(rng, MEMBERS), uniform_patients(rng, NON_MEMBERS)
    path = tmp_path / "cohort.csv"
    members.to_csv(path, index=False)
    spread = math.sqrt((MEMBERS + NON_MEMBERS + 1) / (12 * MEMBERS * NON_MEMBERS))
    auc = {}
    for name, privacy in (("plain", None), ("private", {"epsilon": 1})):
        run = TrainedRun(train(memorisable_config(privacy), data=str(path),
                               out=tmp_path / name, verbose=0))  # fmt: skip
        encode = run.transformer.encode
        synthetic = encode(run.sample_frame(200, seed=0))
        auc[name] = membership_auc(synthetic, encode(members), encode(others))
    # The private run's noise has a secret key: its AUC is a fresh draw each run.
    assert auc["plain"] > 0.5 + 2.5 * spread, auc  # memorised
    assert auc["private"] < 0.5 + 3 * spread, auc  # no better than chance
    assert auc["private"] < auc["plain"], auc


def _number_bytes(values):
    """How a statistic could sit in a file: text and float32/float64 bytes."""
    found = []
    for value in values:
        found += [repr(float(value)).encode(), struct.pack("<f", value), struct.pack("<d", value)]
    return found


def _shipped_bytes(run):
    """Every byte a private run exports: config, transforms, the Keras generator
    (its zip's members) and every file of the SavedModel."""
    blobs = [(run / "config.yaml").read_bytes(), (run / "transforms.json").read_bytes()]
    with zipfile.ZipFile(run / "generator.keras") as archive:
        blobs += [archive.read(name) for name in archive.namelist()]
    blobs += [p.read_bytes() for p in (run / "serving").rglob("*") if p.is_file()]
    return blobs


def test_a_private_export_ships_no_statistic_of_the_data(private_run, cohort):
    frame = cohort[1]
    export_run(private_run)
    statistics = []
    for name in ("Age", "HR"):
        values = frame[name].to_numpy()
        statistics += [values.min(), values.max(), np.median(values)]
        statistics += [np.log1p(values.min()), np.log1p(values.max())]
    statistics.append(frame.groupby("pid").Sex.first().mean())
    statistics.append(renewal_rate(frame, "Drug", "pid"))
    needles = _number_bytes(statistics)
    shipped = _shipped_bytes(private_run)
    leaks = [n for n in needles for blob in shipped if n in blob]
    assert not leaks
    # No static groups' patient counts; the renewal rates are the released ones.
    transforms = json.loads((private_run / "transforms.json").read_text())
    assert transforms.get("static_groups", []) == []
    released = ReleasedMarginals.from_dict(
        json.loads((private_run / "checkpoint" / "released.json").read_text())
    )
    assert transforms["renewal_rates"] == {"Drug": released.renewal_rates()[0]}
    # The same search finds the range that a schema without bounds fits and ships.
    schema = Schema.from_dict(
        {
            "id": "pid",
            "time": "t",
            "variables": [{"name": "HR", "kind": "numeric", "transform": "minmax"}],
        }
    )
    fitted = json.dumps(CohortTransformer(schema).fit(frame).to_dict()).encode()
    assert any(n in fitted for n in _number_bytes([frame.HR.min(), frame.HR.max()]))


def test_private_training_refuses_what_would_read_the_data(tmp_path):
    data = yaml.safe_load(PRIVATE_CONFIG)
    data["schema"]["variables"][2].pop("bounds")
    with pytest.raises(InputError, match="'HR': private training needs public bounds"):
        Config.from_dict(data)
    data = yaml.safe_load(PRIVATE_CONFIG)
    data["schema"]["variables"][2]["transform"] = "boxcox"
    with pytest.raises(InputError, match="Box-Cox lambda"):
        Config.from_dict(data)
    data = yaml.safe_load(PRIVATE_CONFIG)
    data["schema"]["lengths"] = "variable"
    with pytest.raises(InputError, match="lengths: fixed"):
        Config.from_dict(data)
    with pytest.raises(InputError, match="privacy.epsilon must be a positive number"):
        private_config(privacy={"epsilon": 0})
    with pytest.raises(InputError, match="privacy has no field 'epsilom'"):
        private_config(privacy={"epsilom": 1})
    with pytest.raises(InputError, match="privacy.release: 'temporal' cannot align"):
        private_config(privacy={"epsilon": 1, "release": ["temporal"]})
    with pytest.raises(InputError, match="privacy.release_share must be below 1"):
        private_config(privacy={"epsilon": 1, "release_share": 1})
    config = private_config()
    assert set(config.training.alignment) == {"marginal", "tails"}
    assert not config.model.conditional and config.training.validation == 0
    assert config.model.discrete_output == "persistent"
    assert private_config(privacy={"epsilon": 1, "release": []}).training.alignment == {}


def test_declared_bounds_set_the_scale_and_clip():
    schema = Schema.from_dict(
        {
            "id": "pid",
            "time": "t",
            "variables": [
                {"name": "HR", "kind": "numeric", "transform": "log", "bounds": [30, 200]}
            ],
        }
    )
    frame = pd.DataFrame({"pid": [0, 0, 1, 1], "t": [0, 1, 0, 1], "HR": [60.0, 70, 80, 90]})
    transformer = CohortTransformer(schema).fit(frame)
    scaled = transformer.scale("HR", np.array([30.0, 200.0, 10.0, 500.0, 80.0]))
    expected = (np.log1p(80.0) - np.log1p(30.0)) / (np.log1p(200.0) - np.log1p(30.0))
    np.testing.assert_allclose(scaled, [0.0, 1.0, 0.0, 1.0, expected])
    np.testing.assert_allclose(transformer.unscale("HR", scaled[-1:]), [80.0])
    with pytest.raises(InputError, match=r"'HR'\): bounds must be \[low, high\]"):
        Schema.from_dict(
            {
                "id": "pid",
                "time": "t",
                "variables": [{"name": "HR", "kind": "numeric", "bounds": [5, 5]}],
            }
        )


def test_synthesizer_and_cli_take_a_privacy_target(tmp_path):
    from click.testing import CliRunner

    from cli import cli
    from hg_keras import Synthesizer

    path = tmp_path / "private.yaml"
    data = yaml.safe_load(PRIVATE_CONFIG)
    data["training"].pop("privacy")
    path.write_text(yaml.safe_dump(data))
    synth = Synthesizer(str(path), privacy={"epsilon": 2, "clip_norm": 0.5})
    privacy = synth.config.training.privacy
    assert (privacy.epsilon, privacy.clip_norm) == (2.0, 0.5)
    assert set(synth.config.training.alignment) == {"marginal", "tails"}
    cohort = tmp_path / "cohort.csv"
    private_cohort(cohort, patients=32, steps=2)
    args = ["train", "--config", str(path), "--data", str(cohort), "--no-evaluation", "--no-export"]
    result = CliRunner().invoke(cli, [*args, "--epsilon", "5", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "-differentially private per patient after the marginals' release and" in (result.output)
    info = json.loads((tmp_path / "run" / "run.json").read_text())["privacy"]
    assert info["target_epsilon"] == 5.0 and info["epsilon"] <= 5.0
    refused = CliRunner().invoke(cli, [*args, "--epsilon", "0", "--out", str(tmp_path / "r2")])
    assert refused.exit_code != 0 and "--epsilon" in refused.output
