"""The sampler's renewal calibrated net of the generator's drift."""

import numpy as np
import pytest
import tensorflow as tf

from hg_keras.noise import draw_blocks, net_renewal
from hg_keras.sampling import TrainedRun


def drifting(patients, steps, levels, step_size, seed):
    """Per-patient probabilities that wander from month to month (softmax of a random walk)."""
    rng = np.random.default_rng(seed)
    logits = np.cumsum(rng.normal(0, step_size, (patients, steps, levels)), axis=1)
    logits += rng.normal(0, 1, (patients, 1, levels))
    p = np.exp(logits)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def observed_switches(drawn, lengths):
    codes = drawn.argmax(-1)
    pairs = np.arange(codes.shape[1] - 1)[None] < lengths[:, None] - 1
    return np.mean((codes[:, 1:] != codes[:, :-1])[pairs])


@pytest.mark.parametrize("target", [0.15, 0.3])
def test_draws_at_the_net_renewal_switch_as_often_as_the_target(target):
    """Monte Carlo draws of draw_blocks at the solved rate hit the target share,
    on patients of different lengths (only their own consecutive months count)."""
    probabilities = drifting(30_000, 6, 3, 0.3, seed=0)
    lengths = np.random.default_rng(1).integers(2, 7, 30_000)
    pairs = np.arange(5)[None] < lengths[:, None] - 1
    rate = net_renewal(probabilities, pairs, target)
    assert 0 < rate < 1
    drawn = draw_blocks(tf.constant(probabilities), [(0, 3)], [rate], tf.constant([2, 9], tf.int64))
    assert observed_switches(drawn.numpy(), lengths) == pytest.approx(target, abs=0.006)


def test_a_target_below_the_drift_gets_no_renewal_and_the_fewest_switches():
    probabilities = drifting(30_000, 6, 4, 0.6, seed=3)
    lengths = np.full(30_000, 6)
    pairs = np.ones((30_000, 5), bool)
    drift = np.mean(0.5 * np.abs(np.diff(probabilities, axis=1)).sum(-1))
    assert net_renewal(probabilities, pairs, drift / 2) == 0.0
    drawn = draw_blocks(tf.constant(probabilities), [(0, 4)], [0.0], tf.constant([4, 1], tf.int64))
    assert observed_switches(drawn.numpy(), lengths) == pytest.approx(drift, abs=0.006)
    # Probabilities that never drift: the rate is the data's over the spread.
    still = np.repeat(probabilities[:, :1], 6, axis=1)
    spread = np.mean(1 - (still[:, 0] ** 2).sum(-1))
    assert net_renewal(still, pairs, 0.1) == pytest.approx(0.1 / spread, rel=1e-5)


def test_a_run_samples_with_the_renewal_calibrated_on_its_generator(trained_run):
    """run.json's rates are the solved rate for the data's switch share, with
    the drift and renewal switches of the generator's own probabilities (a loop here)."""
    run = TrainedRun(trained_run)
    rates = run.info["renewal_rates"]
    assert set(rates) == {b.name for b in run.transformer.layout.dynamic_blocks}
    assert run.drawer().renewal == rates
    raw = run.drawer()
    raw.discrete_output = "argmax"  # the generated probabilities, before any draw
    encoded, _ = raw(1024, run.months, tf.constant([run.config.training.seed, 0], tf.int64))
    encoded = encoded.numpy()
    for block in run.transformer.layout.dynamic_blocks:
        p = np.maximum(encoded[..., block.start : block.end], 0)
        p = p / p.sum(-1, keepdims=True)
        drift, fresh = [], []
        for patient in p:
            for before, now in zip(patient[:-1], patient[1:]):
                drift.append(0.5 * np.abs(now - before).sum())
                fresh.append(1 - now @ before)
        switch = run.transformer.switch_rates[block.name]
        want = np.clip((switch - np.mean(drift)) / (np.mean(fresh) - np.mean(drift)), 0, 1)
        assert rates[block.name] == pytest.approx(want, abs=1e-5), block.name
