"""The WGAN-GP training model: critic iterations, gradient penalty, alignment terms."""

import keras
import tensorflow as tf

from hg_keras import noise as streams
from hg_keras.data.transforms import PAD
from hg_keras.layers.carry_forward import CarryForward
from hg_keras.layers.gate_lstm import first_order_only
from hg_keras.losses import (
    gradient_penalty,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from hg_keras.noise import latent_noise
from hg_keras.privacy import clip_and_noise, gaussian_noise, per_patient_gradients


# Not registered for saving: a run saves its generator, and resumes the
# pair from weight checkpoints of a model rebuilt from the run's config.
class WGANGP(keras.Model):
    """Trains a generator against a critic as Health Gym v1 does.

    Each ``train_step`` on a real batch makes `critic_steps` critic updates
    (all on the same real batch, each with fresh fakes) and then one
    generator update:

    * critic: ``mean D(fake) - mean D(real) + gradient_penalty_weight * GP``,
      with GP at one uniform interpolation per sequence
      (:func:`hg_keras.losses.gradient_penalty`);
    * generator: ``-mean D(fake) + sum(weight * term(real, fake, valid))``
      over the alignment terms given to :meth:`compile`
      (:mod:`hg_keras.alignment`; v1's is the correlation term, weight 10),
      each measured against the step's real batch.

    Noise and interpolation weights are stateless draws keyed by `seed` and
    the generator optimizer's iteration count, so a run resumed from a
    checkpoint draws exactly what an uninterrupted run would.

    Under a ``tf.distribute`` strategy (:mod:`hg_keras.distribute`) every
    replica takes a slice of the global batch and its slice of the global
    noise. The Wasserstein terms and the gradient penalty are means over the
    global batch (per-replica means, scaled by 1/replicas, summed by the
    optimizer's all-reduce); the correlation term is that of the global
    batch (its moments are all-reduced). Every replica makes the same
    critic/generator alternation, so N replicas train as one device would on
    the same global batch, up to floating-point summation order. The other
    alignment terms compare each replica's slice with its slice of the real
    batch (sorted values and per-patient statistics of the global batch
    would need an all-gather), so N replicas follow the mean of N slice terms.

    Args:
        generator: :class:`Generator`.
        critic: :class:`Critic`.
        critic_steps: int, critic updates per generator update (v1: 5).
        gradient_penalty_weight: float (v1: 10).
        latent_distribution: str, ``uniform`` (v1's U[0, 1)) or ``normal``.
        seed: int.
        carried: list of `[start, end, flag column]`, default empty (v1):
            variables that repeat their previous month wherever their flag
            is set (``carried_when`` in the schema), imposed on the
            generator's output by :class:`hg_keras.layers.CarryForward`
            before the critic and the terms see it, as sampling imposes it.
        privacy: :class:`hg_keras.privacy.CriticDPSGD` or None: train the
            critic with DP-SGD on Poisson-sampled batches (each patient's
            real score, fake and penalty term one clipped gradient, then
            Gaussian noise), and draw the generator's fakes at the expected
            batch size so that its update reads nothing real.

    Logged per epoch (means over its steps): ``critic_loss``,
    ``gradient_penalty`` (unweighted), ``wasserstein`` (mean D(real) - mean
    D(fake), the distance estimate), ``generator_loss`` and, per alignment
    term, ``<name>_loss`` (unweighted).
    """

    def __init__(
        self,
        generator,
        critic,
        critic_steps=5,
        gradient_penalty_weight=10.0,
        latent_distribution="uniform",
        seed=42,
        carried=(),
        privacy=None,
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
        self.critic_steps = critic_steps
        self.gradient_penalty_weight = gradient_penalty_weight
        self.latent_distribution = latent_distribution
        self.seed = seed
        self.carry_forward = CarryForward(carried) if carried else None
        self.privacy = privacy
        self.alignment = []
        self.trackers = _trackers(["critic_loss", "gradient_penalty", "wasserstein"])
        # Both networks are built functional models; without a call() on real
        # data Keras would otherwise consider the wrapper unbuilt (keras#20164).
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, generator_optimizer, critic_optimizer, alignment=(), **kwargs):
        """Sets both optimizers and the generator's alignment terms.

        Args:
            generator_optimizer, critic_optimizer: Keras optimizers.
            alignment: list of `(term, weight)`: callables
                ``term(real, fake, valid)`` with a `name`
                (:func:`hg_keras.alignment.build_terms`); none is plain WGAN-GP.
        """
        # No model-level optimizer: Keras would otherwise add an unused RMSprop
        # over all variables to every checkpoint.
        super().compile(optimizer=None, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer
        self.alignment = list(alignment)
        names = [term.name for term, _ in self.alignment]
        if len(set(names)) != len(names):
            raise ValueError(f"alignment terms need distinct names, got {names}")
        self.trackers = _trackers(
            ["critic_loss", "gradient_penalty", "wasserstein", "generator_loss"]
            + [f"{name}_loss" for name in names]
        )
        # Built up front so checkpoints can be restored before the first step
        # and slot variables are never created inside a replicated function.
        generator_optimizer.build(self.generator.trainable_variables)
        critic_optimizer.build(self.critic.trainable_variables)

    @property
    def optimizers(self):
        """Both optimizers, generator's first: what a checkpoint saves besides the weights."""
        return [self.generator_optimizer, self.critic_optimizer]

    # Nothing in it depends on a tensor's value: autograph has nothing to convert.
    @tf.autograph.experimental.do_not_convert
    def call(self, real, training=False):
        """A generated batch shaped like `real` `(batch, time, width)`, from fresh noise;
        a conditional generator is given `real`'s static groups. (Keras calls the
        model on a data batch to build it under a distribution strategy.)"""
        real = tf.convert_to_tensor(real)
        seed = tf.constant([self.seed, 0], tf.int64)
        shape = tf.shape(real)
        inputs = latent_noise(
            shape[0], shape[1], self.generator.latent_dim, seed, self.latent_distribution
        )
        if self.generator.conditional:
            condition = tf.gather(real[:, 0], self.generator.condition_columns, axis=-1)
            inputs = [inputs, condition]
        return self.generator(inputs, training=training)

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
            fake = self._generate(batch, noise)
        alpha = batch.local(
            tf.random.stateless_uniform(
                tf.stack([batch.size * batch.replicas, 1, 1]),
                seed=seed + [0, streams.ALPHA_STREAM],
            )
        )
        if self.privacy is not None:
            return self._private_critic_update(batch, k, fake, alpha)
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

    def _private_critic_update(self, batch, k, fake, alpha):
        """A DP-SGD critic update: per-patient clipped gradients plus Gaussian noise."""
        variables = self.critic.trainable_variables
        per_patient, values = per_patient_gradients(
            self.critic, batch.real, fake, alpha, self.gradient_penalty_weight
        )
        privacy = self.privacy
        noise = gaussian_noise(variables, privacy.noise_multiplier, privacy.key, batch.base + k)
        gradients, _ = clip_and_noise(
            per_patient, privacy.clip_norm, noise, float(privacy.expected_batch)
        )
        self.critic_optimizer.apply(gradients, variables)
        # The sample's means, for the owner's logs (not released).
        means = tf.math.divide_no_nan(
            tf.reduce_sum(values, axis=0), tf.cast(tf.shape(values)[0], tf.float32)
        )
        return {"critic_loss": means[0], "gradient_penalty": means[1], "wasserstein": means[2]}

    def _generator_update(self, batch):
        """The generator update: fool the critic, plus the weighted alignment terms."""
        seed = tf.stack([tf.constant(self.seed, tf.int64), batch.base + streams.GENERATOR_STREAM])
        size = batch.size * batch.replicas
        if self.privacy is not None:
            # As many fakes whatever the Poisson sample's size: nothing here reads it.
            size = tf.constant(self.privacy.expected_batch, tf.int32)
        noise = self.noise(size, batch.steps, seed)
        if self.privacy is None:
            noise = batch.local(noise)
        with tf.GradientTape() as tape, first_order_only():
            fake = self._generate(batch, noise)
            adversarial = wasserstein_generator_loss(self.critic(fake, training=True))
            terms = {term.name: term(batch.real, fake, batch.valid) for term, _ in self.alignment}
            generator_loss = adversarial + sum(w * terms[t.name] for t, w in self.alignment)
            scaled = generator_loss * batch.scale
        gradients = tape.gradient(scaled, self.generator.trainable_variables)
        self.generator_optimizer.apply(gradients, self.generator.trainable_variables)
        return {"generator_loss": generator_loss, **{f"{n}_loss": v for n, v in terms.items()}}

    def _generate(self, batch, noise):
        """The generator's soft output for `noise`, as the critic and the terms see it.

        Variable-length patients: padded steps get padded noise and padded
        fakes, so both networks mask them; a conditional generator is given
        the real patients' static attributes.
        """
        valid = batch.valid
        if valid is not None:
            noise = tf.where(valid[..., None], noise, PAD)
        inputs = noise if batch.condition is None else [noise, batch.condition]
        fake = self.generator(inputs, training=True)
        if self.carry_forward is not None:
            fake = self.carry_forward(fake)
        if valid is not None:
            fake = tf.where(valid[..., None], fake, PAD)
        return fake

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


def _trackers(names):
    return {name: keras.metrics.Mean(name=name) for name in names}


def _across_workers():
    """True when Keras will reduce this step's logs across several workers:
    a multi-worker strategy whose cluster holds more than one task."""
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(cluster.get(job, ())) for job in ("chief", "worker")) > 1
