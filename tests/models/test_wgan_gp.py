import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

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
        correlation_target(real),
        critic_steps=critic_steps,
        seed=seed,
    )
    wgan.compile(
        keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.99),
        keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.99),
    )
    return wgan, real


def test_train_step_updates_both_networks_and_logs(art_schema):
    wgan, real = make_wgan(art_schema)
    generator_before = [w.copy() for w in wgan.generator.get_weights()]
    critic_before = [w.copy() for w in wgan.critic.get_weights()]
    logs = wgan.train_step(real)
    assert set(logs) == {
        "critic_loss",
        "gradient_penalty",
        "wasserstein",
        "generator_loss",
        "correlation_loss",
        "marginal_loss",
        "temporal_loss",
        "increment_loss",
        "level_entropy",
        "profile_loss",
        "group_loss",
        "trend_loss",
        "summary_loss",
    }
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert float(logs["group_loss"]) == float(logs["trend_loss"]) == 0.0  # off: not computed
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


def test_profile_loss_is_held_to_the_training_cohorts_month_means(tiny_config_path):
    from hg_keras.config import load_config
    from hg_keras.data import CohortTransformer, load_cohort
    from hg_keras.data.pipeline import month_profile
    from hg_keras.losses import profile_loss
    from hg_keras.training import build_wgan

    config = load_config(tiny_config_path).replace_training(profile_weight=5.0)
    frame = load_cohort(patients=8)
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = transformer.encode(frame)[:, :6]
    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, encoded)
    np.testing.assert_allclose(wgan.profile_target.numpy(), encoded.mean(axis=0), atol=1e-6)
    # The logged loss is the generated batch's month means against that target.
    noise = wgan.noise(8, 6, tf.constant([0, 1], tf.int64))
    fake = wgan.generator(noise)
    cohort = profile_loss(fake, tf.constant(month_profile(encoded)))
    expected = np.mean(np.abs(fake.numpy().mean(axis=0) - encoded.mean(axis=0)))
    assert float(cohort) == pytest.approx(expected, rel=1e-5)
    logs = wgan.train_step(tf.constant(encoded))
    assert np.isfinite(float(logs["profile_loss"])) and float(logs["profile_loss"]) > 0


def test_summary_loss_is_logged_when_weighted_and_not_traced_when_off(tiny_config_path):
    from hg_keras.training import build_wgan

    frame = load_cohort(patients=8)
    config = load_config(tiny_config_path)
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = tf.constant(transformer.encode(frame)[:, :6])
    keras.utils.set_random_seed(0)
    weighted = build_wgan(config.replace_training(summary_weight=30.0), transformer, encoded)
    assert float(weighted.train_step(encoded)["summary_loss"]) > 0
    off = build_wgan(config, transformer, encoded)
    assert float(off.train_step(encoded)["summary_loss"]) == 0.0


def test_group_loss_is_logged_when_weighted(tiny_config_path):
    from hg_keras.training import build_wgan

    frame = load_cohort(patients=8)
    config = load_config(tiny_config_path).replace_training(group_weight=50.0)
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = transformer.encode(frame)[:, :6]
    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, encoded)
    assert wgan.group_weight == 50.0
    static = [c for start, end in wgan.static_blocks for c in range(start, end)]
    assert static == list(transformer.layout.static_columns)
    assert float(wgan.train_step(tf.constant(encoded))["group_loss"]) > 0


def test_averaged_generator_holds_the_moving_average_of_its_weights(tiny_config_path):
    from hg_keras.training import build_wgan

    config = load_config(tiny_config_path).replace_training(generator_average=0.6)
    frame = load_cohort(patients=8)
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = tf.constant(transformer.encode(frame)[:, :6])
    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, encoded)
    assert wgan.generator_optimizer.use_ema and not wgan.critic_optimizer.use_ema
    with wgan.averaged_generator():  # no update yet: the weights as they are
        untouched = [w.copy() for w in wgan.generator.get_weights()]
    np.testing.assert_array_equal(untouched[0], wgan.generator.get_weights()[0])

    average = None
    for _ in range(3):
        wgan.train_step(encoded)
        weights = [w.copy() for w in wgan.generator.get_weights()]
        # NumPy reference: the first update's weights, then 0.6 * average + 0.4 * weights.
        average = (
            weights if average is None else [0.6 * a + 0.4 * w for a, w in zip(average, weights)]
        )
    trainable = {id(v) for v in wgan.generator.trainable_variables}
    is_trainable = [id(v) in trainable for v in wgan.generator.weights]
    with wgan.averaged_generator() as generator:
        for inside, want, last, moving in zip(
            generator.get_weights(), average, weights, is_trainable
        ):
            np.testing.assert_allclose(inside, want if moving else last, rtol=1e-5, atol=1e-7)
        assert any(not np.allclose(a, w) for a, w in zip(generator.get_weights(), weights))
    for after, last in zip(wgan.generator.get_weights(), weights):
        np.testing.assert_array_equal(after, last)  # training goes on from its own weights


def test_carried_values_follow_their_flags_in_what_the_critic_sees(art_schema):
    """build_wgan passes the schema's ``carried_when`` on: with straight-through
    draws the critic's view repeats VL exactly under a drawn ``VL (M)``, and the
    soft output (the losses' view) carries by the flag's probability."""
    from conftest import carrying

    from hg_keras.models.wgan_gp import _Batch
    from hg_keras.training import build_wgan

    schema = carrying(art_schema)
    frame = load_cohort(patients=8)
    transformer = CohortTransformer(schema).fit(frame)
    encoded = transformer.encode(frame)[:, :6]
    config = load_config("art4hiv").replace_training(straight_through=True)
    config = dataclasses.replace(config, schema=schema)
    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, encoded)
    layout = transformer.layout
    vl, flag = layout.block("VL").start, layout.block("VL (M)").start + 1
    assert [vl, vl + 1, flag] in [list(c) for c in wgan.carry_forward.carried]

    seed = tf.constant([0, 1], tf.int64)
    noise = wgan.noise(8, 6, seed)
    raw = wgan.generator(noise).numpy()
    fake, shown = (t.numpy() for t in wgan._generate(_Batch(wgan, encoded), noise, seed))
    drawn = shown[:, 1:, flag] == 1
    assert drawn.any() and (~drawn).any()
    np.testing.assert_array_equal(shown[:, 1:, vl][drawn], shown[:, :-1, vl][drawn])
    np.testing.assert_allclose(shown[:, 1:, vl][~drawn], raw[:, 1:, vl][~drawn], rtol=1e-6)
    p = raw[:, 1:, flag]
    expected = p * fake[:, :-1, vl] + (1 - p) * raw[:, 1:, vl]
    np.testing.assert_allclose(fake[:, 1:, vl], expected, rtol=1e-5, atol=1e-6)


def test_learning_rate_decay_follows_a_half_cosine_over_the_configured_updates(tiny_config_path):
    from hg_keras.data.pipeline import steps_per_epoch
    from hg_keras.training import build_wgan

    frame = load_cohort(patients=8)
    config = load_config(tiny_config_path).replace_training(
        learning_rate_decay=0.9, epochs=3, critic_steps=2
    )
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = transformer.encode(frame)
    wgan = build_wgan(config, transformer, encoded)
    training = config.training
    updates = training.epochs * steps_per_epoch(8, training.curriculum, training.batch_size)

    def expected(step, total):
        done = min(step, total) / total
        return training.learning_rate * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * done)))

    # The critic steps critic_steps times per generator update: the same curve for both.
    for optimizer, total in (
        (wgan.generator_optimizer, updates),
        (wgan.critic_optimizer, updates * training.critic_steps),
    ):
        for step in (0, total // 3, total, 2 * total):
            optimizer.iterations.assign(step)
            assert float(optimizer.learning_rate) == pytest.approx(expected(step, total), rel=1e-5)
    constant = build_wgan(config.replace_training(learning_rate_decay=0.0), transformer, encoded)
    constant.generator_optimizer.iterations.assign(updates)
    assert float(constant.generator_optimizer.learning_rate) == pytest.approx(
        training.learning_rate
    )
