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
* the generator learns from the critic (post-processing) and from
  cohort-level marginals released once by the Gaussian mechanism
  (:func:`release_marginals`): the alignment terms listed in
  ``privacy.release`` (``marginal``, ``tails``) compare with these instead of
  the real batch; every other term, and everything else that reads real
  data outside the critic, is off (:func:`private_settings`).

The accounted event per generator update is
``PoissonSampled(q, Gaussian(noise_multiplier / sqrt(critic_steps)))``:
`critic_steps` adaptive Gaussian releases of sensitivity `clip_norm` on one
sample compose exactly to one Gaussian release with that multiplier
(Gaussian differential privacy; Dong, Roth & Su, JRSS-B 2022), and Poisson
subsampling of a mechanism dominated by a Gaussian pair is dominated by the
subsampled Gaussian (Zhu, Dong & Wang, AISTATS 2022). The neighbouring
relation is adding or removing one patient, with all their visits. The
release is one ``Gaussian(release_noise)`` event (each patient's marginals
are one vector of norm at most 1, :func:`patient_marginals`). The RDP
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

from hg_keras.data.transforms import PAD, rate_from_shares
from hg_keras.errors import InputError
from hg_keras.layers.gate_lstm import first_order_only
from hg_keras.losses import gradient_penalty

log = logging.getLogger(__name__)

# Integer Renyi orders: the fractional ones of dp-accounting's default list
# warn and drop out for small multipliers.
ORDERS = tuple(range(2, 64)) + (80, 96, 128, 192, 256, 512, 1024)

# Alignment terms that can align with released marginals instead of the real batch.
RELEASABLE = ("marginal", "tails")

# The released numeric histograms' bins over the encoded [0, 1], and how many
# quantile levels the alignment terms interpolate.
RELEASE_BINS = 32
QUANTILE_LEVELS = 257

# What a private run switches off, and why: each reads training data outside the critic.
SWITCHED_OFF = {
    "training.alignment": (
        "terms not in privacy.release compare with real-batch statistics; "
        "the released ones align with noised cohort marginals"
    ),
    "training.validation": "the released snapshot would be chosen on training patients",
    "training.rebalance": "group frequencies are a statistic of the data",
    "model.conditional": "conditions would be the real patients' static groups",
    "model.discrete_output": (
        "compound levels and the data's renewal rates are statistics of the data: codes "
        "are drawn persistently, renewed at the rates of the released switch shares"
    ),
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
        release: tuple of alignment terms (of :data:`RELEASABLE`) kept with
            released cohort marginals as their target; empty: none, the
            generator learns from the critic alone.
        release_share: float in (0, 1), the share of epsilon the release
            alone may spend (the total is accounted together).
        release_noise: float or None, the release's noise standard deviation
            (sensitivity 1); None: set from `release_share` when the run starts.
    """

    epsilon: float
    delta: float | None = None
    clip_norm: float = 1.0
    noise_multiplier: float | None = None
    release: tuple = RELEASABLE
    release_share: float = 0.2
    release_noise: float | None = None

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
        values = dict(values)
        values["release"] = _release_names(values.get("release", RELEASABLE), where)
        for name, value in values.items():
            if name == "release" or (value is None and name in NULLABLE):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InputError(
                    f"{where}: privacy.{name} must be a positive number, got '{value}'"
                )
        for name in ("delta", "release_share"):
            if values.get(name) is not None and values[name] >= 1:
                raise InputError(f"{where}: privacy.{name} must be below 1, got {values[name]}")
        return cls(**{k: v if k == "release" or v is None else float(v) for k, v in values.items()})

    def resolved_delta(self, patients):
        return self.delta if self.delta is not None else default_delta(patients)


NULLABLE = ("delta", "noise_multiplier", "release_noise")


def _release_names(names, where):
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise InputError(f"{where}: privacy.release must be a list of terms, got '{names}'")
    for name in names:
        if name not in RELEASABLE:
            raise InputError(
                f"{where}: privacy.release: '{name}' cannot align with released marginals "
                f"(expected some of {', '.join(RELEASABLE)})"
            )
    return tuple(names)


def default_delta(patients):
    """``1 / patients ** 1.1``: below 1/patients, as a meaningful delta must be."""
    return 1.0 / patients**1.1


def dp_event(noise_multiplier, sampling_rate, steps, critic_steps, release_noise=None):
    """The ``dp_accounting`` event of `steps` generator updates, after the
    marginals' release when `release_noise` is given (module docstring)."""
    per_update = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier / math.sqrt(critic_steps))
    )
    updates = dp_accounting.SelfComposedDpEvent(per_update, int(steps))
    if release_noise is None:
        return updates
    return dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(release_noise), updates])


def spent_epsilon(noise_multiplier, sampling_rate, steps, critic_steps, delta, release_noise=None):
    """Epsilon spent after `steps` generator updates (and the release), by the RDP accountant."""
    if steps == 0 and release_noise is None:
        return 0.0
    accountant = dp_accounting.rdp.RdpAccountant(ORDERS)
    accountant.compose(
        dp_event(noise_multiplier, sampling_rate, steps, critic_steps, release_noise)
    )
    return float(accountant.get_epsilon(delta))


def _smallest_noise(event, epsilon, delta):
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: dp_accounting.rdp.RdpAccountant(ORDERS),
            event,
            epsilon,
            delta,
            dp_accounting.LowerEndpointAndGuess(1e-2, 1.0),
            tol=1e-4,
        )
    )


def calibrate(epsilon, delta, sampling_rate, steps, critic_steps, release_noise=None):
    """The smallest noise multiplier whose `steps` updates (after the release,
    if any) spend at most `epsilon`."""
    return _smallest_noise(
        lambda sigma: dp_event(sigma, sampling_rate, steps, critic_steps, release_noise),
        epsilon,
        delta,
    )


def calibrate_release(epsilon, delta):
    """The smallest release noise (sensitivity 1) that spends at most `epsilon` alone."""
    return _smallest_noise(dp_accounting.GaussianDpEvent, epsilon, delta)


def allowed_steps(
    noise_multiplier, sampling_rate, critic_steps, epsilon, delta, planned, release_noise=None
):
    """The most generator updates that spend at most `epsilon` (at least `planned`
    when calibrated for them; searched up to 4x `planned`)."""

    def within(steps):
        spent = spent_epsilon(
            noise_multiplier, sampling_rate, steps, critic_steps, delta, release_noise
        )
        return spent <= epsilon

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
    """(model, training) with every lever that reads data outside the critic off,
    but the alignment terms of ``privacy.release``, which take released targets."""
    model = dataclasses.replace(
        model, conditional=False, discrete_output="persistent", carry_forward="declared"
    )
    release = training.privacy.release if training.privacy is not None else ()
    alignment = {k: w for k, w in training.alignment.items() if k in release and w}
    training = dataclasses.replace(training, alignment=alignment, validation=0, rebalance=False)
    return model, training


def patient_marginals(encoded, numeric_width, blocks, dynamic=()):
    """Each patient's marginals as one vector of L2 norm at most 1.

    Per numeric, the shares of the patient's steps in each of
    :data:`RELEASE_BINS` equal bins of the encoded [0, 1]; per discrete
    block, the shares of its levels; per time-varying block in `dynamic`,
    the shares of the patient's month-to-month transitions that keep and
    that change its level (zeros for a patient of one step). Each part sums
    to 1 at most and is non-negative, so its norm is at most 1; the parts are
    scaled by ``1 / sqrt(parts)``. Adding or removing a patient moves the
    cohort's sum by at most 1: the sensitivity the release's noise is scaled to.

    Args:
        encoded: array `(patients, time, width)`, the encoded cohort (padded
            steps all :data:`hg_keras.data.transforms.PAD`).
        numeric_width: int, the numerics are the first columns.
        blocks: list of `(start, end)` of the one-hot blocks.
        dynamic: list of `(start, end)`, the time-varying ones among `blocks`.

    Returns:
        array `(patients, numeric_width * RELEASE_BINS + block columns + 2 * len(dynamic))`.
    """
    encoded = np.asarray(encoded, np.float64)
    patients, steps = encoded.shape[:2]
    parts = []
    for column in range(numeric_width):
        bins = np.clip((encoded[..., column] * RELEASE_BINS).astype(int), 0, RELEASE_BINS - 1)
        histogram = np.zeros((patients, RELEASE_BINS))
        np.add.at(histogram, (np.arange(patients)[:, None], bins), 1.0 / steps)
        parts.append(histogram)
    parts += [encoded[..., start:end].mean(axis=1) for start, end in blocks]
    valid = np.any(encoded != PAD, axis=-1)
    transitions = valid[:, 1:] & valid[:, :-1]
    counts = np.maximum(transitions.sum(axis=1), 1)
    for start, end in dynamic:
        levels = encoded[..., start:end].argmax(axis=-1)
        switched = (levels[:, 1:] != levels[:, :-1]) & transitions
        share = switched.sum(axis=1) / counts
        kept = np.where(transitions.any(axis=1), 1.0 - share, 0.0)
        parts.append(np.stack([kept, share], axis=1))
    return np.concatenate(parts, axis=1) / math.sqrt(len(parts))


@dataclasses.dataclass(frozen=True)
class ReleasedMarginals:
    """Cohort marginals released by the Gaussian mechanism: the alignment targets
    of a private run.

    Args:
        histograms: tuple of tuples, per numeric, then per discrete block,
            then per time-varying block the shares of transitions that keep
            and change its level: the noised shares (clipped at 0, summing to 1).
        numeric_width: int.
        blocks: tuple of `(start, end)`.
        dynamic: tuple of `(start, end)`, the time-varying blocks.
    """

    histograms: tuple
    numeric_width: int
    blocks: tuple
    dynamic: tuple = ()

    def quantiles(self):
        """`(QUANTILE_LEVELS, numeric_width)`: each numeric's quantile function at
        evenly spaced levels from 0 to 1 (uniform within a bin)."""
        edges = np.linspace(0.0, 1.0, RELEASE_BINS + 1)
        levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS)
        columns = []
        for shares in self.histograms[: self.numeric_width]:
            cumulative = np.concatenate([[0.0], np.cumsum(shares)])
            columns.append(np.interp(levels, cumulative, edges))
        return np.stack(columns, axis=1).astype(np.float32)

    def shares(self, width):
        """`(width,)`: each discrete block's released level shares in its columns."""
        out = np.zeros(width, np.float32)
        for (start, end), shares in zip(self.blocks, self.histograms[self.numeric_width :]):
            out[start:end] = shares
        return out

    def renewal_rates(self):
        """Per time-varying block, the renewal rate that makes a persistent draw
        switch as often as the released transitions do
        (:func:`hg_keras.data.transforms.renewal_rate` on released shares)."""
        levels = dict(zip(self.blocks, self.histograms[self.numeric_width :]))
        return [
            rate_from_shares(switch, levels[block])
            for block, switch in zip(self.dynamic, self.switch_rates())
        ]

    def switch_rates(self):
        """Per time-varying block, the released share of months that change level."""
        switches = self.histograms[self.numeric_width + len(self.blocks) :]
        return [float(switch) for _, switch in switches]

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(
            histograms=tuple(tuple(h) for h in values["histograms"]),
            numeric_width=int(values["numeric_width"]),
            blocks=tuple(tuple(b) for b in values["blocks"]),
            dynamic=tuple(tuple(b) for b in values.get("dynamic", ())),
        )


def noised_marginals(encoded, numeric_width, blocks, noise, key, dynamic=()):
    """The Gaussian mechanism on the cohort's summed :func:`patient_marginals`.

    Args:
        encoded, numeric_width, blocks, dynamic: as :func:`patient_marginals`.
        noise: float, the noise standard deviation (the sensitivity is 1).
        key: int, the run's secret noise key.
    """
    summed = patient_marginals(encoded, numeric_width, blocks, dynamic).sum(axis=0)
    return summed + np.random.default_rng([key, 1]).normal(0.0, noise, summed.shape)


def release_marginals(encoded, numeric_width, blocks, noise, key, dynamic=()):
    """:func:`noised_marginals` as :class:`ReleasedMarginals`: each part clipped at 0
    and normalised (post-processing), uniform where the noise left nothing."""
    noised = noised_marginals(encoded, numeric_width, blocks, noise, key, dynamic)
    sizes = [RELEASE_BINS] * numeric_width + [end - start for start, end in blocks]
    sizes += [2] * len(dynamic)
    histograms = []
    for part in np.split(noised, np.cumsum(sizes)[:-1]):
        part = np.maximum(part, 0.0)
        total = part.sum()
        part = part / total if total > 0 else np.full(part.shape, 1.0 / part.size)
        histograms.append(tuple(float(v) for v in part))
    return ReleasedMarginals(
        tuple(histograms), int(numeric_width), tuple(map(tuple, blocks)), tuple(map(tuple, dynamic))
    )


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
