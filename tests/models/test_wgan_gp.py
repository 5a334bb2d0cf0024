import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from hg_keras.alignment import Encoding, build_terms
from hg_keras.config import load_config
from hg_keras.data import CohortTransformer, load_cohort
from hg_keras.data.pipeline import correlation_target
from hg_keras.models import WGANGP, Critic, Generator


def make_wgan(art_schema, seed=7, critic_steps=2):
    keras.utils.set_random_seed(seed)
    frame = load_cohort(patients=8)
    transformer = CohortTransformer(art_schema).fit(frame)
    real = transformer.encode(frame)[:, :5]
    features = transformer.layout.spec()
    wgan = WGANGP(
        Generator(features, latent_dim=4, hidden_units=8),
        Critic(features, hidden_units=8),
        critic_steps=critic_steps,
        seed=seed,
    )
    encoding = Encoding(correlation_target=correlation_target(real))
    wgan.compile(
        keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.99),
        keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.99),
        alignment=build_terms({"correlation": 10.0}, encoding),
    )
    return wgan, real


def test_train_step_updates_both_networks_and_logs(art_schema):
    wgan, real = make_wgan(art_schema)
    generator_before = [w.copy() for w in wgan.generator.get_weights()]
    critic_before = [w.copy() for w in wgan.critic.get_weights()]
    logs = wgan.train_step(real)
    # v1 logs its one alignment term and no always-zero columns.
    assert set(logs) == {
        "critic_loss",
        "gradient_penalty",
        "wasserstein",
        "generator_loss",
        "correlation_loss",
    }
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert int(wgan.critic_optimizer.iterations) == 2
    assert int(wgan.generator_optimizer.iterations) == 1
    for before, after in (
        (generator_before, wgan.generator.get_weights()),
        (critic_before, wgan.critic.get_weights()),
    ):
        assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_same_seed_same_training(art_schema):
    results = []
    for _ in range(2):
        wgan, real = make_wgan(art_schema, critic_steps=1)  # each critic step is traced
        wgan.fit(np.repeat(real, 2, axis=0), batch_size=8, epochs=1, verbose=0, shuffle=False)
        results.append(wgan.generator.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_carried_values_follow_their_flags_in_what_the_critic_sees(art_schema):
    """build_wgan passes the schema's ``carried_when`` on: the generator's soft
    output, which the critic and the terms see, carries VL by the probability
    of its ``VL (M)`` flag."""
    from conftest import carrying

    from hg_keras.models.wgan_gp import _Batch
    from hg_keras.training import build_wgan

    schema = carrying(art_schema)
    frame = load_cohort(patients=8)
    transformer = CohortTransformer(schema).fit(frame)
    encoded = transformer.encode(frame)[:, :6]
    config = dataclasses.replace(load_config("art4hiv"), schema=schema)
    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, encoded)
    layout = transformer.layout
    vl, flag = layout.block("VL").start, layout.block("VL (M)").start + 1
    assert [vl, vl + 1, flag] in [list(c) for c in wgan.carry_forward.carried]

    noise = wgan.noise(8, 6, tf.constant([0, 1], tf.int64))
    raw = wgan.generator(noise).numpy()
    fake = wgan._generate(_Batch(wgan, encoded), noise).numpy()
    p = raw[:, 1:, flag]
    expected = p * fake[:, :-1, vl] + (1 - p) * raw[:, 1:, vl]
    np.testing.assert_allclose(fake[:, 1:, vl], expected, rtol=1e-5, atol=1e-6)


def test_generator_loss_is_the_adversarial_term_plus_each_weight_times_its_term(tiny_config_path):
    """Every weight distinct: swapping two weights in the sum would fail here."""
    from hg_keras.losses import wasserstein_generator_loss
    from hg_keras.models.wgan_gp import _Batch
    from hg_keras.noise import GENERATOR_STREAM
    from hg_keras.training import build_wgan

    weights = {"correlation": 3.0, "marginal": 7.0, "temporal": 11.0, "increment": 13.0}
    weights.update({"confidence": 17.0, "trend": 19.0, "tails": 23.0})
    config = load_config(tiny_config_path).replace_training(alignment=weights)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, discrete_output="persistent")
    )
    frame = load_cohort(patients=8)
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = tf.constant(transformer.encode(frame)[:, :6])
    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, encoded)
    # The generator update's own fakes, recomputed before the update changes the weights.
    batch = _Batch(wgan, encoded)
    seed = tf.constant([config.training.seed, GENERATOR_STREAM], tf.int64)
    fake = wgan._generate(batch, wgan.noise(8, 6, seed))
    adversarial = float(wasserstein_generator_loss(wgan.critic(fake)))
    terms = {t.name: float(t(encoded, fake, None)) for t, _ in wgan.alignment}
    expected = adversarial + sum(weights[name] * value for name, value in terms.items())
    wgan.critic_steps = 0  # the critic would otherwise change before the generator step
    logs = wgan._generator_update(batch)
    assert set(terms) == set(weights) and all(v > 0 for v in terms.values())
    for name, value in terms.items():
        assert float(logs[f"{name}_loss"]) == pytest.approx(value, rel=1e-5)
    assert float(logs["generator_loss"]) == pytest.approx(expected, rel=1e-5)
