"""Differential privacy: DP-SGD on the critic, accounted with dp-accounting.

A private run (``training.privacy``) trains the critic with DP-SGD (Abadi et
al., CCS 2016) and releases nothing else that reads the training patients:

* every generator update starts from a Poisson sample of the patients
  (each in with probability ``q = batch_size / patients``);
* in each of the step's `critic_steps` critic updates, every sampled
  patient's contribution (its real score, the fake drawn beside it and its
  gradient-penalty term) is a gradient of its own, clipped to `clip_norm`;
  their sum gets Gaussian noise of standard deviation
  ``noise_multiplier * clip_norm`` and is divided by the expected batch;
* the generator learns from the critic alone (post-processing): the
  alignment terms, which compare with real-batch statistics, are off, and
  so is everything else that reads real data outside the critic
  (:func:`private_settings`).

The accounted event per generator update is
``PoissonSampled(q, Gaussian(noise_multiplier / sqrt(critic_steps)))``:
`critic_steps` adaptive Gaussian releases of sensitivity `clip_norm` on one
sample compose exactly to one Gaussian release with that multiplier
(Gaussian differential privacy; Dong, Roth & Su, JRSS-B 2022), and Poisson
subsampling of a mechanism dominated by a Gaussian pair is dominated by the
subsampled Gaussian (Zhu, Dong & Wang, AISTATS 2022). The neighbouring
relation is adding or removing one patient, with all their visits. The RDP
accountant of ``dp_accounting`` composes the events and converts to
(epsilon, delta).

Preprocessing in a private run reads no data: numeric ranges are the
schema's ``bounds``, levels its codes, and a fixed-length cohort's number of
steps is the study's design (public).
"""

import dataclasses
import logging
import math

import dp_accounting
import keras
import numpy as np
import tensorflow as tf

from hg_keras.errors import InputError
from hg_keras.layers.gate_lstm import first_order_only
from hg_keras.losses import gradient_penalty

log = logging.getLogger(__name__)

# Integer Renyi orders: the fractional ones of dp-accounting's default list
# warn and drop out for small multipliers.
ORDERS = tuple(range(2, 64)) + (80, 96, 128, 192, 256, 512, 1024)

# What a private run switches off, and why: each reads training data outside the critic.
SWITCHED_OFF = {
    "training.alignment": "the terms compare with real-batch statistics",
    "training.validation": "the released snapshot would be chosen on training patients",
    "training.rebalance": "group frequencies are a statistic of the data",
    "model.conditional": "conditions would be the real patients' static groups",
    "model.discrete_output": "renewal rates and compound levels are statistics of the data",
    "model.carry_forward": "detecting carried values reads the data",
}

# Files of a run folder that hold un-noised data or depend on it; they stay
# with the data owner and are never exported.
OWNER_ONLY = ("holdout.json", "run.json", "logs/", "evaluation/", "checkpoint/privacy.json")


@dataclasses.dataclass(frozen=True)
class Privacy:
    """A private run's target and its DP-SGD settings.

    Args:
        epsilon: float, the (epsilon, delta) target of the whole run.
        delta: float or None, default ``1 / patients ** 1.1``.
        clip_norm: float, each patient's critic-gradient norm is clipped to it.
        noise_multiplier: float or None, noise standard deviation over
            `clip_norm`; None: the smallest that keeps the planned updates
            within the target (set when the run starts, then saved).
    """

    epsilon: float
    delta: float | None = None
    clip_norm: float = 1.0
    noise_multiplier: float | None = None

    @classmethod
    def from_dict(cls, values, where):
        if not isinstance(values, dict):
            raise InputError(f"{where}: privacy must map epsilon (and delta, clip_norm) to numbers")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise InputError(
                f"{where}: privacy has no field '{unknown[0]}' "
                f"(expected {', '.join(sorted(fields))})"
            )
        if "epsilon" not in values:
            raise InputError(f"{where}: privacy needs an epsilon")
        for name, value in values.items():
            if value is None and name in ("delta", "noise_multiplier"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InputError(
                    f"{where}: privacy.{name} must be a positive number, got '{value}'"
                )
        delta = values.get("delta")
        if delta is not None and delta >= 1:
            raise InputError(f"{where}: privacy.delta must be below 1, got {delta}")
        return cls(**{k: None if v is None else float(v) for k, v in values.items()})

    def resolved_delta(self, patients):
        return self.delta if self.delta is not None else default_delta(patients)


def default_delta(patients):
    """``1 / patients ** 1.1``: below 1/patients, as a meaningful delta must be."""
    return 1.0 / patients**1.1


def dp_event(noise_multiplier, sampling_rate, steps, critic_steps):
    """The ``dp_accounting`` event of `steps` generator updates (module docstring)."""
    per_update = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier / math.sqrt(critic_steps))
    )
    return dp_accounting.SelfComposedDpEvent(per_update, int(steps))


def spent_epsilon(noise_multiplier, sampling_rate, steps, critic_steps, delta):
    """Epsilon spent after `steps` generator updates, by the RDP accountant."""
    if steps == 0:
        return 0.0
    accountant = dp_accounting.rdp.RdpAccountant(ORDERS)
    accountant.compose(dp_event(noise_multiplier, sampling_rate, steps, critic_steps))
    return float(accountant.get_epsilon(delta))


def calibrate(epsilon, delta, sampling_rate, steps, critic_steps):
    """The smallest noise multiplier whose `steps` updates spend at most `epsilon`."""
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: dp_accounting.rdp.RdpAccountant(ORDERS),
            lambda sigma: dp_event(sigma, sampling_rate, steps, critic_steps),
            epsilon,
            delta,
            dp_accounting.LowerEndpointAndGuess(1e-2, 1.0),
            tol=1e-4,
        )
    )


def allowed_steps(noise_multiplier, sampling_rate, critic_steps, epsilon, delta, planned):
    """The most generator updates that spend at most `epsilon` (at least `planned`
    when calibrated for them; searched up to 4x `planned`)."""

    def within(steps):
        return spent_epsilon(noise_multiplier, sampling_rate, steps, critic_steps, delta) <= epsilon

    low, high = 0, max(int(planned), 1) * 4
    if within(high):
        return high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if within(middle) else (low, middle)
    return low


def check_schema(schema, where):
    """Refuses a schema whose preprocessing would read the data in a private run."""
    if schema.variable_length or schema.irregular_time:
        raise InputError(
            f"{where}: private training needs lengths: fixed and regular time "
            "(patient lengths and visit gaps would be statistics of the data)"
        )
    for variable in schema.variables:
        if not variable.is_numeric:
            continue
        if variable.bounds is None:
            raise InputError(
                f"{where}: column '{variable.name}': private training needs public bounds, "
                "e.g. bounds: [0, 100]"
            )
        if variable.transform == "boxcox":
            raise InputError(
                f"{where}: column '{variable.name}': a Box-Cox lambda is fitted on the data; "
                "use transform: log or minmax for private training"
            )


def private_settings(model, training):
    """(model, training) with every lever that reads data outside the critic off."""
    model = dataclasses.replace(
        model, conditional=False, discrete_output="argmax", carry_forward="declared"
    )
    training = dataclasses.replace(training, alignment={}, validation=0, rebalance=False)
    return model, training


def per_patient_gradients(critic, real, fake, alpha, penalty_weight):
    """Each patient's critic-loss gradient, one patient at a time.

    Patient `i`'s loss is ``D(fake_i) - D(real_i) + penalty_weight * GP_i``
    (GP at ``alpha_i * real_i + (1 - alpha_i) * fake_i``): everything the
    patient's presence in the sample changes. A ``tf.map_fn`` over
    single-patient tapes: ``tf.vectorized_map`` and ``tape.jacobian`` cannot
    vectorize the LSTM's TensorArray loop and fall back to the same loop
    (the Jacobian 1.5x slower, measured on a 2-core CPU).

    Args:
        critic: the critic model.
        real, fake: `(patients, time, features)`.
        alpha: `(patients, 1, 1)`.
        penalty_weight: float.

    Returns:
        (gradients, values): a list of `(patients, *shape)` tensors, one per
        critic variable, and `(patients, 3)`: each loss, penalty and score gap.
    """
    variables = critic.trainable_variables

    def one(inputs):
        real_i, fake_i, alpha_i = (x[None] for x in inputs)
        with tf.GradientTape() as tape:
            with first_order_only():
                scores = critic(tf.concat([real_i, fake_i], axis=0), training=True)
            penalty = gradient_penalty(critic, real_i, fake_i, alpha_i)
            loss = scores[1, 0] - scores[0, 0] + penalty_weight * penalty
        gradients = tape.gradient(loss, variables)
        return gradients, tf.stack([loss, penalty, scores[0, 0] - scores[1, 0]])

    return tf.map_fn(
        one,
        (real, fake, alpha),
        fn_output_signature=(
            [tf.TensorSpec(v.shape, v.dtype) for v in variables],
            tf.TensorSpec([3], tf.float32),
        ),
        parallel_iterations=8,
    )


def gaussian_noise(variables, multiplier, key, step):
    """Standard-normal draws times `multiplier`, shaped like `variables`,
    keyed by the secret `key` and the critic update's index `step`."""
    seed = tf.stack([tf.constant(key, tf.int64), tf.cast(step, tf.int64) * len(variables)])
    return [
        multiplier * tf.random.stateless_normal(v.shape, seed=seed + [0, i])
        for i, v in enumerate(variables)
    ]


def clip_and_noise(per_patient, clip_norm, noise, expected_batch):
    """The private gradient from per-patient gradients.

    Args:
        per_patient: list of tensors `(patients, *variable shape)`, one per variable.
        clip_norm: float, each patient's norm over all variables is clipped to it.
        noise: list of tensors shaped like the variables, standard normal
            times the noise multiplier (:func:`gaussian_noise`).
        expected_batch: float, the Poisson sample's expected size.

    Returns:
        (gradients, norms): the noised mean per variable and each patient's
        norm before clipping.
    """
    squares = [tf.reshape(tf.square(g), [tf.shape(g)[0], -1]) for g in per_patient]
    norms = tf.sqrt(tf.add_n([tf.reduce_sum(s, axis=1) for s in squares]))
    factors = tf.minimum(1.0, clip_norm / tf.maximum(norms, 1e-12))
    gradients = []
    for g, z in zip(per_patient, noise):
        clipped = tf.tensordot(factors, g, axes=[[0], [0]])
        gradients.append((clipped + clip_norm * z) / expected_batch)
    return gradients, norms


@dataclasses.dataclass(frozen=True)
class CriticDPSGD:
    """What :class:`hg_keras.models.WGANGP` needs for private critic updates.

    Args:
        clip_norm: float.
        noise_multiplier: float.
        expected_batch: int, the Poisson sample's expected size (the
            config's batch size); the generator also draws this many fakes.
        key: int, the secret key of the noise draws.
    """

    clip_norm: float
    noise_multiplier: float
    expected_batch: int
    key: int


class PrivacyBudget(keras.callbacks.Callback):
    """Stops training before a generator update would spend more than the target.

    Counts the generator optimizer's iterations, which the checkpoint keeps,
    so a resumed run continues the accountant where it stopped.

    Args:
        limit: int, the most updates within the budget (:func:`allowed_steps`).
    """

    def __init__(self, limit):
        super().__init__()
        self.limit = int(limit)

    def on_train_batch_end(self, batch, logs=None):
        updates = int(self.model.generator_optimizer.iterations.numpy())
        if updates >= self.limit and not self.model.stop_training:
            log.info("privacy budget spent at update %d; training stops", updates)
            self.model.stop_training = True


def noise_key():
    """A secret key for the DP noise: the saved seed must not predict it."""
    return int(np.random.SeedSequence().entropy % (2**62))
