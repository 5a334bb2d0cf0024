"""A training run: cohort in, trained generator and everything to reuse it out.

What the run folder holds is :mod:`hg_keras.run_folder`'s; which patients it
trains on is :mod:`hg_keras.holdout`'s.
"""

import dataclasses
import logging
import math
import sys

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from hg_keras.alignment import Encoding, build_terms
from hg_keras.callbacks import (
    EpochCheckpoint,
    NonFiniteGuard,
    StopOnSignal,
    TimeBudget,
    completed_epochs,
)
from hg_keras.data.derived import detect_carried
from hg_keras.data.pipeline import (
    check_curriculum,
    correlation_target,
    curriculum_dataset,
    default_curriculum,
    patient_weights,
    steps_per_epoch,
)
from hg_keras.data.transforms import CohortTransformer
from hg_keras.distribute import describe, is_chief
from hg_keras.errors import InputError
from hg_keras.holdout import load_training_cohort
from hg_keras.models import WGANGP, Critic, Generator
from hg_keras.privacy import (
    OWNER_ONLY,
    SWITCHED_OFF,
    CriticDPSGD,
    PrivacyBudget,
    allowed_steps,
    calibrate,
    calibrate_release,
    dp_event,
    release_marginals,
    spent_epsilon,
)
from hg_keras.run_folder import RunFolder
from hg_keras.sampling import TrainedRun
from hg_keras.selection import BestSnapshot, check_epochs

log = logging.getLogger(__name__)

# The epochs of a run that only the clock stops.
CLOCK_ONLY = 10**6


def build_wgan(config, transformer, encoded, recurrent="gate", privacy=None, released=None):
    """Builds and compiles the WGAN-GP for `config` (weights from the global seed).

    Args:
        encoded: the encoded training cohort `(patients, time, features)`,
            for the cohort-wide targets of the losses.
        recurrent: ``gate`` (the model) or ``keras`` (the benchmark's
            ``keras.layers.LSTM`` reference of the same sizes and losses).
        privacy: :class:`hg_keras.privacy.CriticDPSGD` for a private run.
        released: :class:`hg_keras.privacy.ReleasedMarginals`, a private
            run's alignment targets; `encoded` is then not read.
    """
    features = transformer.layout.spec()
    model = config.model
    generator = Generator(
        features,
        latent_dim=model.latent_dim,
        hidden_units=model.hidden_units,
        align_backward=model.align_backward,
        static_head=model.static_head,
        recurrent=recurrent,
        masked=config.schema.variable_length,
        condition_columns=transformer.layout.condition_columns if model.conditional else (),
        patient_latent_dim=model.patient_latent_dim,
        slow_noise_dim=model.slow_noise_dim,
        slow_noise_memory=model.slow_noise_memory,
        latent_distribution=model.latent_distribution,
        numeric_margin=model.numeric_margin,
        name="generator",
    )
    critic = Critic(
        features,
        hidden_units=model.hidden_units,
        recurrent=recurrent,
        masked=config.schema.variable_length,
        step_scores=model.step_scores,
        name="critic",
    )
    training = config.training
    wgan = WGANGP(
        generator,
        critic,
        critic_steps=training.critic_steps,
        gradient_penalty_weight=training.gradient_penalty_weight,
        latent_distribution=model.latent_distribution,
        seed=training.seed,
        carried=transformer.layout.carried,
        privacy=privacy,
    )

    def adam(name):
        return keras.optimizers.Adam(
            training.learning_rate, beta_1=training.beta_1, beta_2=training.beta_2, name=name
        )

    wgan.compile(
        generator_optimizer=adam("generator_adam"),
        critic_optimizer=adam("critic_adam"),
        alignment=build_terms(training.alignment, encoding(config, transformer, encoded, released)),
    )
    return wgan


def encoding(config, transformer, encoded, released=None):
    """The :class:`hg_keras.alignment.Encoding` of a cohort encoded by `transformer`
    (with a private run's `released` marginals, whose cohort is not read)."""
    layout = transformer.layout
    renewal = renewal_rates(config.model.discrete_output, transformer)
    return Encoding(
        numeric_width=layout.numeric_width,
        blocks=tuple((b.start, b.end) for b in layout.discrete_blocks),
        dynamic_blocks=tuple((b.start, b.end) for b in layout.dynamic_blocks),
        renewal=None if renewal is None else tuple(renewal),
        correlation_target=None if released else correlation_target(encoded),
        released=released,
    )


def renewal_rates(discrete_output, transformer):
    """Per time-varying discrete block, the sampler's renewal rate (None for argmax)."""
    dynamic = transformer.layout.dynamic_blocks
    if discrete_output == "sample":
        return [1.0] * len(dynamic)
    if discrete_output in ("persistent", "joint"):
        return [transformer.renewal_rates.get(b.name, 1.0) for b in dynamic]
    return None


def train(
    config=None,
    data=None,
    out=None,
    resume=False,
    epochs=None,
    verbose=None,
    strategy=None,
    callbacks=(),
    updates=None,
    minutes=None,
):
    """Trains (or resumes) a run and returns its folder.

    Args:
        config: :class:`Config` of a new run; a resumed run uses its own.
        data: path of a cohort file, or None for the embedded cohort.
        out: run folder; default ``saved_models/run-<time>``.
        resume: bool, continue the run in `out` from its last completed epoch.
        epochs, updates, minutes: a budget replacing the config's
            (``training.epochs``, ``updates``, ``minutes``), e.g. to extend
            a resumed run; with `minutes` and one of the others, the first
            reached stops the run.
        verbose: Keras verbosity; default a progress bar on a terminal and
            one line per epoch otherwise.
        strategy: ``tf.distribute.Strategy`` (see :mod:`hg_keras.distribute`);
            default the current one. Only its chief writes to `out`; other
            workers read the checkpoint there on resume.
        callbacks: extra Keras callbacks for ``fit`` (e.g. a time budget).

    Returns:
        Path of the run folder.

    Raises:
        InputError: bad data or config, or a run folder that does not match
            the request (existing run without `resume`, or no run with it).
        TrainingError: a non-finite loss; the last good checkpoint is kept.
    """
    folder = RunFolder(out) if out else RunFolder.new()
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    config, data = _run_request(folder, config, data, resume, chief)
    config = config.replace_training(epochs=epochs, updates=updates, minutes=minutes)
    keras.utils.set_random_seed(config.training.seed)

    config, transformer, encoded, holdout, validation = _prepare(
        folder, config, data, resume, strategy
    )
    patients = encoded.shape[0]
    epochs = planned_epochs(config.training, patients)
    per_epoch = steps_per_epoch(patients, config.training.curriculum, config.training.batch_size)
    config = _calibrated(config, patients, epochs * per_epoch, strategy)
    start_epoch = completed_epochs(folder.checkpoint_dir)
    private = None
    if config.training.privacy is not None:
        private = _private_plan(folder, config, transformer, encoded, epochs * per_epoch, resume)
    if chief:
        if not resume:
            ids = [] if holdout is None else holdout[config.schema.id].unique()
            folder.write_setup(config, transformer, ids)
        folder.write_info(data, patients, start_epoch)
    if private and start_epoch * per_epoch >= private["limit"]:
        log.info("the privacy budget is spent; nothing left to train")
        return folder.path
    with strategy.scope():
        wgan = build_wgan(
            config,
            transformer,
            encoded,
            privacy=private and private["dpsgd"],
            released=private and private["released"],
        )
    dataset = _training_dataset(config, transformer, encoded, start_epoch, epochs)
    _log_plan(folder, config, encoded, start_epoch, epochs, strategy)
    callbacks = [
        *callbacks,
        *_run_callbacks(folder, config, transformer, validation, encoded, epochs, chief, private),
    ]
    _fit(
        wgan,
        dataset,
        folder,
        config,
        patients,
        (start_epoch, epochs),
        chief,
        resume,
        verbose,
        callbacks,
        data,
    )
    if chief:
        folder.write_generator(wgan.generator)
        TrainedRun(folder.path).calibrate_renewal()
        if private is not None:
            _write_guarantee(folder, config, private, wgan)
        folder.link_latest()
    return folder.path


def _calibrated(config, patients, planned, strategy):
    """A private config with its delta and the noise multiplier that keeps the
    `planned` updates within its epsilon (kept as it is once set)."""
    training = config.training
    privacy = training.privacy
    if privacy is None:
        return config
    if strategy.num_replicas_in_sync > 1:
        raise InputError("private training runs on one device; drop --strategy")
    if training.updates is None and training.epochs is None:
        raise InputError(
            "private training needs training.updates or training.epochs: the noise is "
            "calibrated for a planned number of updates"
        )
    if privacy.noise_multiplier is not None:
        return config
    delta = privacy.resolved_delta(patients)
    release = None
    if training.alignment:
        release = calibrate_release(privacy.release_share * privacy.epsilon, delta)
    sigma = calibrate(
        privacy.epsilon,
        delta,
        training.batch_size / patients,
        planned,
        training.critic_steps,
        release,
    )
    log.info(
        "private training: epsilon %g, delta %.3g over %d updates: noise multiplier %.3f%s",
        privacy.epsilon,
        delta,
        planned,
        sigma,
        "" if release is None else f", marginals released with noise {release:.3f}",
    )
    privacy = dataclasses.replace(
        privacy, delta=delta, noise_multiplier=sigma, release_noise=release
    )
    return config.replace_training(privacy=privacy)


def _private_plan(folder, config, transformer, encoded, planned, resume):
    """The DP-SGD settings of a private run, its released marginals (None when no
    alignment term takes them) and the most updates its budget allows."""
    training = config.training
    privacy = training.privacy
    rate = training.batch_size / encoded.shape[0]
    key = folder.privacy_key(create=not resume)
    dpsgd = CriticDPSGD(
        clip_norm=privacy.clip_norm,
        noise_multiplier=privacy.noise_multiplier,
        expected_batch=training.batch_size,
        key=key,
    )
    released = None
    if privacy.release_noise is not None:
        layout = transformer.layout
        blocks = [(b.start, b.end) for b in layout.discrete_blocks]
        dynamic = [(b.start, b.end) for b in layout.dynamic_blocks]
        released = folder.released_marginals(
            lambda: release_marginals(
                encoded, layout.numeric_width, blocks, privacy.release_noise, key, dynamic
            )
        )
        # The sampler renews each code at the released rate (a noised statistic).
        names = [b.name for b in layout.dynamic_blocks]
        transformer.renewal_rates = dict(zip(names, released.renewal_rates()))
        transformer.switch_rates = dict(zip(names, released.switch_rates()))
    limit = allowed_steps(
        privacy.noise_multiplier,
        rate,
        training.critic_steps,
        privacy.epsilon,
        privacy.delta,
        planned,
        privacy.release_noise,
    )
    return {"dpsgd": dpsgd, "rate": rate, "limit": limit, "released": released}


def _write_guarantee(folder, config, private, wgan):
    """Writes the spent (epsilon, delta) to run.json and logs it."""
    training = config.training
    privacy = training.privacy
    updates = int(wgan.generator_optimizer.iterations.numpy())
    accounted = (
        privacy.noise_multiplier,
        private["rate"],
        updates,
        training.critic_steps,
    )
    spent = spent_epsilon(*accounted, privacy.delta, privacy.release_noise)
    event = dp_event(*accounted, privacy.release_noise)
    record = {
        "epsilon": spent,
        "delta": privacy.delta,
        "target_epsilon": privacy.epsilon,
        "updates": updates,
        "budget_spent": updates >= private["limit"],
        "noise_multiplier": privacy.noise_multiplier,
        "clip_norm": privacy.clip_norm,
        "sampling_rate": private["rate"],
        "critic_steps": training.critic_steps,
        "accountant": "dp_accounting RdpAccountant, add or remove one patient",
        "event": str(event),
        "released": {
            "terms": sorted(training.alignment),
            "noise": privacy.release_noise,
            "statistics": "per numeric a histogram of its encoded values, per discrete "
            "column its level shares; each patient's part of norm 1 at most",
        }
        if privacy.release_noise is not None
        else None,
        "switched_off": SWITCHED_OFF,
        "owner_only": list(OWNER_ONLY),
    }
    folder.write_privacy(record)
    log.info(
        "privacy guarantee: (epsilon %.3f, delta %.3g) after %d updates (target epsilon %g)",
        spent,
        privacy.delta,
        updates,
        privacy.epsilon,
    )


def _prepare(folder, config, data, resume, strategy):
    """(config, transformer, encoded training cohort, holdout, validation) of a run,
    with its batch size and curriculum fitted to the cohort."""
    frame, holdout, validation = load_training_cohort(
        config, data, with_holdout=True, with_validation=True
    )
    if resume:
        transformer = folder.read_transformer()
    else:
        config, transformer = _fit_encoding(config, frame, holdout)
    encoded = _encode(transformer, frame)
    config = _fit_batch_size(config, encoded.shape[0], strategy.num_replicas_in_sync)
    if config.training.curriculum is None:
        config = config.replace_training(curriculum=default_curriculum(encoded.shape[1]))
    # Refuse a cohort the curriculum cannot use before anything is written.
    check_curriculum(encoded, config.training.curriculum, config.training.batch_size)
    return config, transformer, encoded, holdout, validation


def _run_callbacks(folder, config, transformer, validation, encoded, epochs, chief, private):
    """The run's own callbacks beyond checkpoints and logs: the privacy budget, the
    clock and the snapshot choice (last, so that it sees a stop set at the epoch's end)."""
    callbacks = []
    if private is not None:
        callbacks.append(PrivacyBudget(private["limit"]))
    if config.training.minutes is not None:
        callbacks.append(TimeBudget(config.training.minutes * 60, at_epoch_end=True))
    if validation is not None:
        callbacks.append(
            _snapshot_choice(folder, config, transformer, validation, encoded, epochs, chief)
        )
    return callbacks


def _fit_encoding(config, frame, holdout):
    """(config, fitted transformer) of a new run: the carried-forward rules found
    (``carry_forward: detect``) are written into the config's schema."""
    if config.model.carry_forward == "detect":
        # The held-out patients too: the run's evaluation reloads them under the rules found.
        seen = frame if holdout is None else pd.concat([frame, holdout], ignore_index=True)
        schema, found = detect_carried(seen, config.schema)
        config = dataclasses.replace(config, schema=schema)
        rules = ", ".join(f"{name} under {flag}={code}" for name, flag, code in found)
        log.info("carried forward (detected): %s", rules or "none")
    joint = config.model.discrete_output == "joint"
    private = config.training.privacy is not None
    transformer = CohortTransformer(config.schema, joint=joint).fit(frame, private=private)
    for compound in transformer.compounds:
        log.info(
            "modelled together: %s (%d combinations)",
            ", ".join(compound.members),
            len(compound.combinations),
        )
    return config, transformer


def _snapshot_choice(folder, config, transformer, validation, encoded, epochs, chief):
    """The callback that releases the best of ``training.checks`` snapshots."""
    training = config.training
    minutes_only = training.updates is None and training.epochs is None
    log.info(
        "choosing the generator among %d snapshots by %d validation patients",
        training.checks,
        validation[config.schema.id].nunique(),
    )
    return BestSnapshot(
        validation,
        transformer,
        config.model,
        encoded.shape[1],
        folder.checkpoint_dir,
        epochs=() if minutes_only else check_epochs(epochs, training.checks),
        seconds=training.minutes * 60 / training.checks if minutes_only else None,
        seed=training.seed,
        write=chief,
    )


def planned_epochs(training, patients):
    """Epochs of a run: `epochs`, or enough whole epochs for `updates` generator updates.

    A budget of minutes alone runs until the clock stops it.
    """
    if training.epochs is not None:
        return training.epochs
    if training.updates is None:
        return CLOCK_ONLY
    per_epoch = steps_per_epoch(patients, training.curriculum, training.batch_size)
    return max(1, math.ceil(training.updates / per_epoch))


def _run_request(folder, config, data, resume, chief):
    """(config, data) of the run: a resumed run's own, or the new run's after checks."""
    if resume:
        if not folder.info_path.exists():
            raise InputError(f"{folder.path}: not a training run (no run.json); nothing to resume")
        return folder.read_config(), data if data is not None else folder.read_info().get("data")
    if chief and folder.started:
        raise InputError(
            f"{folder.path}: already holds a run; pass --resume to continue it or choose "
            "another --out"
        )
    if config is None:
        raise ValueError("a new run needs a config")
    return config, data


def _encode(transformer, frame):
    """The cohort encoded for training; refuses missing values the schema does not model."""
    encoded = transformer.encode(frame)
    if np.isnan(encoded).any():
        names = [v.name for v in transformer.schema.variables if v.missing == "allow"]
        raise InputError(
            f"the cohort has missing values in {', '.join(names) or 'some column'}; "
            "set 'missing: indicator' on those variables to model them"
        )
    return encoded


def _fit_batch_size(config, patients, replicas):
    """The config with a batch no larger than the cohort, split evenly over replicas."""
    batch_size = min(config.training.batch_size, patients)
    if batch_size < config.training.batch_size:
        log.warning(
            "%d patients; batch size lowered from %d to %d",
            patients,
            config.training.batch_size,
            batch_size,
        )
        config = config.replace_training(batch_size=batch_size)
    if batch_size % replicas:
        raise InputError(
            f"batch size {batch_size} does not split over {replicas} replicas; "
            f"choose a training.batch_size divisible by {replicas}"
        )
    return config


def _training_dataset(config, transformer, encoded, start_epoch, epochs):
    """The curriculum's batches from `start_epoch` on, rebalanced if configured."""
    training = config.training
    weights = None
    if training.rebalance:
        weights = patient_weights(encoded, transformer.layout.condition_columns)
    return curriculum_dataset(
        encoded,
        training.curriculum,
        training.batch_size,
        training.seed,
        first_epoch=start_epoch,
        epochs=max(epochs - start_epoch, 1),
        weights=weights,
        poisson=training.privacy is not None,
    )


def _log_plan(folder, config, encoded, start_epoch, epochs, strategy):
    patients, steps, width = encoded.shape
    batch_size = config.training.batch_size
    batches = steps_per_epoch(patients, config.training.curriculum, batch_size)
    log.info(
        "training on %d patients x %d steps, %d encoded features; %d batches of %d per epoch; "
        "epochs %d..%d; run folder %s",
        patients,
        steps,
        width,
        batches,
        batch_size,
        start_epoch + 1,
        epochs,
        folder.path,
    )
    replicas = strategy.num_replicas_in_sync
    log.info("%s; %d patients per replica per batch", describe(strategy), batch_size // replicas)


def _fit(wgan, dataset, folder, config, patients, epochs, chief, resume, verbose, extra, data):
    """Keras ``fit`` from epoch `epochs[0]` to `epochs[1]` with checkpoints, logs and clean
    stops; raises on a non-finite loss."""
    guard = NonFiniteGuard()
    stopper = StopOnSignal(folder.checkpoint_dir)
    callbacks = [
        stopper,
        guard,
        EpochCheckpoint(str(folder.checkpoint_dir), write=chief),
        *extra,
    ]
    if chief:
        folder.logs_dir.mkdir(parents=True, exist_ok=True)
        callbacks += [
            keras.callbacks.CSVLogger(str(folder.history_csv), append=resume),
            keras.callbacks.TensorBoard(str(folder.tensorboard_dir), write_graph=False),
        ]
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    training = config.training
    try:
        wgan.fit(
            dataset,
            epochs=epochs[1],
            initial_epoch=epochs[0],
            steps_per_epoch=steps_per_epoch(patients, training.curriculum, training.batch_size),
            callbacks=callbacks,
            shuffle=False,
            verbose=verbose,
        )
    finally:
        stopper.restore()
        if chief:
            folder.write_info(data, patients, completed_epochs(folder.checkpoint_dir))
    guard.raise_if_failed(folder.checkpoint_dir)
