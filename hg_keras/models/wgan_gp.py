"""The WGAN-GP training model: critic iterations, gradient penalty, correlation alignment."""

import contextlib

import keras
import tensorflow as tf

from hg_keras import noise as streams
from hg_keras.data.transforms import PAD
from hg_keras.layers.carry_forward import CarryForward
from hg_keras.layers.gate_lstm import first_order_only
from hg_keras.losses import (
    gradient_penalty,
    group_loss,
    increment_loss,
    level_entropy,
    marginal_loss,
    pooled_correlation,
    profile_loss,
    summary_loss,
    temporal_loss,
    trend_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from hg_keras.noise import draw_blocks, latent_noise


@keras.saving.register_keras_serializable(package="hg_keras")
class WGANGP(keras.Model):
    """Trains a generator against a critic as Health Gym v1 does.

    Each ``train_step`` on a real batch makes `critic_steps` critic updates
    (all on the same real batch, each with fresh fakes) and then one
    generator update:

    * critic: ``mean D(fake) - mean D(real) + gradient_penalty_weight * GP``,
      with GP at one uniform interpolation per sequence
      (:func:`hg_keras.losses.gradient_penalty`);
    * generator: ``-mean D(fake) + correlation_weight * L1(corr(fake), target)``
      where corr is the Pearson matrix pooled over batch and time and
      `target` is the training cohort's; beyond v1, optionally
      ``+ marginal_weight * marginal_loss + temporal_weight * temporal_loss
      + increment_weight * increment_loss + confidence_weight * level_entropy
      + profile_weight * profile_loss + group_weight * group_loss
      + trend_weight * trend_loss + summary_weight * summary_loss``
      (:func:`hg_keras.losses.marginal_loss`, :func:`hg_keras.losses.temporal_loss`,
      :func:`hg_keras.losses.increment_loss`, :func:`hg_keras.losses.level_entropy`,
      :func:`hg_keras.losses.profile_loss`, :func:`hg_keras.losses.group_loss`,
      :func:`hg_keras.losses.trend_loss`, :func:`hg_keras.losses.summary_loss`),
      measured against the step's real batch (the profile against the
      cohort's month means, `profile_target`): the statistics the
      evaluation grades (marginals, autocorrelations, switch rates) get a
      direct gradient instead of waiting for the critic to find them.

    Noise and interpolation weights are stateless draws keyed by `seed` and
    the generator optimizer's iteration count, so a run resumed from a
    checkpoint draws exactly what an uninterrupted run would.

    Under a ``tf.distribute`` strategy (:mod:`hg_keras.distribute`) every
    replica takes a slice of the global batch and its slice of the global
    noise. The Wasserstein terms and the gradient penalty are means over the
    global batch (per-replica means, scaled by 1/replicas, summed by the
    optimizer's all-reduce); the correlation loss is that of the global batch
    (its moments are all-reduced). Every replica makes the same
    critic/generator alternation, so N replicas train as one device would on
    the same global batch, up to floating-point summation order. The marginal
    and temporal losses are the exception: each replica measures its own
    slice against its slice of the real batch (sorted values and per-patient
    statistics of the global batch would need an all-gather), so with their
    weights on, N replicas follow the mean of N slice losses.

    Args:
        generator: :class:`Generator`.
        critic: :class:`Critic`.
        correlation_target: array `(features, features)`.
        critic_steps: int, critic updates per generator update (v1: 5).
        gradient_penalty_weight: float (v1: 10).
        correlation_weight: float (v1: 10).
        latent_distribution: str, ``uniform`` (v1's U[0, 1)) or ``normal``.
        seed: int.
        marginal_weight: float, default 0 (v1).
        temporal_weight: float, default 0 (v1).
        increment_weight: float, default 0 (v1): weight of the distribution
            of the numerics' month-to-month changes.
        confidence_weight: float, default 0 (v1): weight of the entropy of
            the time-varying discrete blocks, each weighted by ``1 -
            renewal`` (persistent variables such as a regimen are decided by
            the generator; month-by-month events keep their probabilities).
        profile_weight: float, default 0 (v1): weight of the month-by-month
            means of every encoded column against `profile_target`.
        profile_target: array `(time, features)`, the training cohort's month
            means (:func:`hg_keras.data.pipeline.month_profile`); None
            compares against the real batch's, which for a rare flag is
            mostly sampling noise.
        group_weight: float, default 0 (v1): weight of each demographic
            group's means of the time-varying variables against the same
            group in the real batch (:func:`hg_keras.losses.group_loss`).
            The pooled marginals and correlations hardly weigh them, so a
            conditional generator shifted whole groups (Caucasians' Rel CD4
            median 13 against 38 real) at almost no cost (issue 13).
        trend_weight: float, default 0 (v1): weight of the share of
            patients whose numerics' linear trends agree in sign
            (:func:`hg_keras.losses.trend_loss`), against the real batch.
        summary_weight: float, default 0 (v1): weight of the spread over
            patients of each numeric's own mean, minimum and maximum
            (:func:`hg_keras.losses.summary_loss`), against the real batch.
        max_lag: int, autocorrelation lags of the temporal loss.
        renewal: list of the sampler's renewal rates
            (:func:`hg_keras.noise.draw_levels`), one per time-varying
            discrete block in layout order, so the temporal loss compares
            the switch rates that sampling will produce; None compares total
            variations between months (argmax output).
        straight_through: bool, default False (v1: the critic sees the
            generator's soft probabilities). True shows the critic levels
            drawn from them as the sampler draws them (same renewal rates),
            one-hot like the real data, with the gradient passed straight
            through to the probabilities (Bengio et al. 2013,
            arXiv:1308.3432). Otherwise a critic tells real from fake by
            softness alone.
        carried: list of `[start, end, flag column]`, default empty (v1):
            variables that repeat their previous month wherever their flag
            is set (``carried_when`` in the schema), imposed on the
            generator's output by :class:`hg_keras.layers.CarryForward`
            before the critic and the losses see it, as sampling imposes it.

    Logged per epoch (means over its steps): ``critic_loss``,
    ``gradient_penalty`` (unweighted), ``wasserstein`` (mean D(real) - mean
    D(fake), the distance estimate), ``generator_loss``, ``correlation_loss``.
    """

    def __init__(
        self,
        generator,
        critic,
        correlation_target,
        critic_steps=5,
        gradient_penalty_weight=10.0,
        correlation_weight=10.0,
        latent_distribution="uniform",
        seed=42,
        marginal_weight=0.0,
        temporal_weight=0.0,
        max_lag=6,
        increment_weight=0.0,
        confidence_weight=0.0,
        profile_weight=0.0,
        summary_weight=0.0,
        profile_target=None,
        group_weight=0.0,
        trend_weight=0.0,
        renewal=None,
        straight_through=False,
        carried=(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if critic_steps < 1:
            raise ValueError(f"critic_steps must be at least 1, got {critic_steps}")
        if latent_distribution not in ("uniform", "normal"):
            raise ValueError(
                f"latent_distribution must be uniform or normal, got {latent_distribution!r}"
            )
        self.generator = generator
        self.critic = critic
        self.correlation_target = tf.constant(correlation_target, dtype=tf.float32)
        self.critic_steps = critic_steps
        self.gradient_penalty_weight = gradient_penalty_weight
        self.correlation_weight = correlation_weight
        self.latent_distribution = latent_distribution
        self.seed = seed
        self.marginal_weight = marginal_weight
        self.temporal_weight = temporal_weight
        self.increment_weight = increment_weight
        self.confidence_weight = confidence_weight
        self.profile_weight = profile_weight
        self.summary_weight = summary_weight
        self.profile_target = (
            None if profile_target is None else tf.constant(profile_target, dtype=tf.float32)
        )
        self.max_lag = max_lag
        self.group_weight = group_weight
        self.trend_weight = trend_weight
        features = generator.features
        static = set(features["static_columns"])
        self.numeric_width = features["numeric_width"]
        blocks = [(s, e) for s, e, *_ in features["blocks"]]
        self.discrete_blocks = blocks
        self.dynamic_blocks = [(s, e) for s, e in blocks if s not in static]
        self.static_blocks = [(s, e) for s, e in blocks if s in static]
        self.renewal = list(renewal) if renewal is not None else None
        self.straight_through = straight_through
        self.carry_forward = CarryForward(carried) if carried else None
        dynamic_rates = iter(self.renewal or [1.0] * len(self.dynamic_blocks))
        self.draw_rates = [0.0 if s in static else next(dynamic_rates) for s, _ in blocks]
        if self.renewal is not None and len(self.renewal) != len(self.dynamic_blocks):
            raise ValueError(
                f"renewal needs {len(self.dynamic_blocks)} rates (one per time-varying "
                f"discrete block), got {len(self.renewal)}"
            )
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in (
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
            )
        }
        # Both networks are built functional models; without a call() on real
        # data Keras would otherwise consider the wrapper unbuilt (keras#20164).
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, generator_optimizer, critic_optimizer, **kwargs):
        # No model-level optimizer: Keras would otherwise add an unused RMSprop
        # over all variables to every checkpoint.
        super().compile(optimizer=None, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer
        # Built up front so checkpoints can be restored before the first step
        # and slot variables are never created inside a replicated function.
        generator_optimizer.build(self.generator.trainable_variables)
        critic_optimizer.build(self.critic.trainable_variables)

    def call(self, noise, training=False):
        return self.generator(noise, training=training)

    def noise(self, batch, steps, seed):
        """Latent noise `(batch, steps, latent_dim)` from a stateless `seed` of shape (2,)."""
        return latent_noise(batch, steps, self.generator.latent_dim, seed, self.latent_distribution)

    def train_step(self, real):
        """`critic_steps` critic updates, one generator update, the epoch's running means."""
        batch = _Batch(self, real)
        for k in range(self.critic_steps):
            critic_values = self._critic_update(batch, k)
        generator_values = self._generator_update(batch)
        return self._log({**critic_values, **generator_values})

    def _critic_update(self, batch, k):
        """The `k`-th critic update of a step: fresh fakes, Wasserstein loss and penalty."""
        real = batch.real
        seed = tf.stack([tf.constant(self.seed, tf.int64), batch.base + k])
        noise = batch.local(self.noise(batch.size * batch.replicas, batch.steps, seed))
        with first_order_only():  # no gradient at all
            _, fake = self._generate(batch, noise, seed)
        alpha = batch.local(
            tf.random.stateless_uniform(
                tf.stack([batch.size * batch.replicas, 1, 1]),
                seed=seed + [0, streams.ALPHA_STREAM],
            )
        )
        with tf.GradientTape() as tape:
            # One critic loop over both batches; rows do not interact.
            # Differentiated once (for the critic's weights): fused.
            with first_order_only():
                scores = self.critic(tf.concat([real, fake], axis=0), training=True)
            real_scores, fake_scores = scores[: batch.size], scores[batch.size :]
            penalty = gradient_penalty(self.critic, real, fake, alpha, valid=batch.valid)
            critic_loss = (
                wasserstein_critic_loss(real_scores, fake_scores)
                + self.gradient_penalty_weight * penalty
            )
            scaled = critic_loss * batch.scale
        gradients = tape.gradient(scaled, self.critic.trainable_variables)
        self.critic_optimizer.apply(gradients, self.critic.trainable_variables)
        return {
            "critic_loss": critic_loss,
            "gradient_penalty": penalty,
            "wasserstein": tf.reduce_mean(real_scores) - tf.reduce_mean(fake_scores),
        }

    @contextlib.contextmanager
    def averaged_generator(self):
        """Inside, the generator holds the moving average of its weights
        (``use_ema`` on the generator's optimizer; nothing changes without
        one); its training weights come back on exit, so training and its
        checkpoints go on from them."""
        optimizer = getattr(self, "generator_optimizer", None)
        # Before the first update the average holds zeros, not weights.
        if optimizer is None or not optimizer.use_ema or int(optimizer.iterations) == 0:
            yield self.generator
            return
        variables = self.generator.trainable_variables
        saved = [keras.ops.convert_to_numpy(v.value) for v in variables]
        optimizer.finalize_variable_values(variables)
        try:
            yield self.generator
        finally:
            for variable, value in zip(variables, saved):
                variable.assign(value)

    def _generator_update(self, batch):
        """The generator update: fool the critic, plus the alignment losses."""
        seed = tf.stack([tf.constant(self.seed, tf.int64), batch.base + streams.GENERATOR_STREAM])
        noise = batch.local(self.noise(batch.size * batch.replicas, batch.steps, seed))
        with tf.GradientTape() as tape, first_order_only():
            fake, shown = self._generate(batch, noise, seed)
            adversarial = wasserstein_generator_loss(self.critic(shown, training=True))
            # The correlation of the global batch: the same on every replica.
            correlation = pooled_correlation(
                shown,
                all_reduce=batch.all_reduce if batch.replicas > 1 else None,
                weights=batch.valid,
            )
            alignment = tf.reduce_mean(tf.abs(correlation - self.correlation_target))
            # Off (v1) means not even traced: the losses add many small ops.
            marginal = temporal = increment = entropy = profile = group = trend = summary = (
                tf.constant(0.0)
            )
            if self.group_weight:
                group = group_loss(
                    fake,
                    batch.real,
                    self.numeric_width,
                    self.static_blocks,
                    self.dynamic_blocks,
                    batch.valid,
                )
            if self.trend_weight:
                trend = trend_loss(fake, batch.real, self.numeric_width, batch.valid)
            if self.marginal_weight:
                marginal = marginal_loss(
                    fake, batch.real, self.numeric_width, self.discrete_blocks, batch.valid
                )
            if self.temporal_weight:
                temporal = temporal_loss(
                    fake,
                    batch.real,
                    self.numeric_width,
                    self.dynamic_blocks,
                    self.renewal,
                    self.max_lag,
                    batch.valid,
                )
            if self.increment_weight and self.numeric_width:
                increment = increment_loss(fake, batch.real, self.numeric_width, batch.valid)
            if self.confidence_weight and self.dynamic_blocks:
                persistence = [1.0 - r for r in self.renewal or [0.0] * len(self.dynamic_blocks)]
                entropy = level_entropy(fake, self.dynamic_blocks, persistence, batch.valid)
            if self.summary_weight:
                summary = summary_loss(fake, batch.real, self.numeric_width, batch.valid)
            if self.profile_weight:
                target = batch.real if self.profile_target is None else self.profile_target
                profile = profile_loss(fake, target, batch.valid)
            generator_loss = (
                adversarial
                + self.correlation_weight * alignment
                + self.marginal_weight * marginal
                + self.temporal_weight * temporal
                + self.increment_weight * increment
                + self.confidence_weight * entropy
                + self.profile_weight * profile
                + self.group_weight * group
                + self.trend_weight * trend
                + self.summary_weight * summary
            )
            scaled = generator_loss * batch.scale
        gradients = tape.gradient(scaled, self.generator.trainable_variables)
        self.generator_optimizer.apply(gradients, self.generator.trainable_variables)
        return {
            "generator_loss": generator_loss,
            "correlation_loss": alignment,
            "marginal_loss": marginal,
            "temporal_loss": temporal,
            "increment_loss": increment,
            "level_entropy": entropy,
            "profile_loss": profile,
            "group_loss": group,
            "trend_loss": trend,
            "summary_loss": summary,
        }

    def _generate(self, batch, noise, seed):
        """(soft output, what the critic sees): the same unless straight-through.

        Variable-length patients: padded steps get padded noise and padded
        fakes, so both networks mask them; a conditional generator is given
        the real patients' static attributes.
        """
        valid = batch.valid
        if valid is not None:
            noise = tf.where(valid[..., None], noise, PAD)
        inputs = noise if batch.condition is None else [noise, batch.condition]
        fake = self.generator(inputs, training=True)
        shown = fake
        if self.straight_through and self.discrete_blocks:
            hard = draw_blocks(fake, self.discrete_blocks, self.draw_rates, seed)
            shown = fake + tf.stop_gradient(hard - fake)
        if self.carry_forward is not None:
            # Each from its own flags: soft ones for `fake`, drawn ones for `shown`.
            fake, shown = self.carry_forward(fake), self.carry_forward(shown)
        if valid is not None:
            fake = tf.where(valid[..., None], fake, PAD)
            shown = tf.where(valid[..., None], shown, PAD)
        return fake, shown

    def _log(self, values):
        # Each replica logs its slice's means; Keras averages them over the
        # replicas, which for equal slices is the global-batch mean.
        for name, value in values.items():
            self.trackers[name].update_state(value)
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        if _across_workers():
            # Keras reduces multi-worker logs with `axis=0`, which fails on
            # scalars (tensorflow/tensorflow#72388); give them that axis.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results


class _Batch:
    """One replica's view of a training step's real batch.

    Under a strategy ``train_step`` runs once per replica on its slice of
    the global batch. Noise and alpha are drawn for the global batch and
    sliced (:meth:`local`), so every replica count draws what one device
    would; losses are scaled by ``1/replicas`` because the optimizer sums
    the replicas' gradients, which makes them the global-batch means.
    """

    def __init__(self, wgan, real):
        self.real = tf.convert_to_tensor(real)
        self.size, self.steps = tf.shape(self.real)[0], tf.shape(self.real)[1]
        step = tf.cast(wgan.generator_optimizer.iterations, tf.int64)
        self.base = step * (wgan.critic_steps + 1)
        self.context = tf.distribute.get_replica_context()
        self.replicas = self.context.num_replicas_in_sync
        self.scale = 1.0 / self.replicas
        self.start = tf.cast(self.context.replica_id_in_sync_group, tf.int32) * self.size
        self.valid = None
        if wgan.generator.masked:
            self.valid = tf.reduce_any(tf.not_equal(self.real, PAD), axis=-1)
        self.condition = None
        if wgan.generator.conditional:
            columns = wgan.generator.condition_columns
            self.condition = tf.gather(self.real[:, 0], columns, axis=-1)

    def local(self, tensor):
        """This replica's rows of a global-batch tensor."""
        return tensor[self.start : self.start + self.size]

    def all_reduce(self, tensor):
        return self.context.all_reduce("sum", tensor)


def _across_workers():
    """True when Keras will reduce this step's logs across several workers."""
    strategy = tf.distribute.get_strategy()
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )
