"""A training run: cohort in, trained generator and everything to reuse it out.

A run folder holds::

    config.yaml         the exact config used (extends resolved)
    run.json            where the data came from, epochs completed
    transforms.json     the fitted encoding (Box-Cox lambdas, ranges, levels)
    checkpoint/         weights, both optimizers' state and the epoch (every epoch)
    logs/history.csv    per-epoch losses; logs/tensorboard/ for TensorBoard
    generator.keras     the trained generator
"""

import datetime
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from hg_keras.callbacks import EpochCheckpoint, NonFiniteGuard, StopOnSignal, completed_epochs
from hg_keras.config import load_config, save_config
from hg_keras.data.cohort import load_cohort
from hg_keras.data.pipeline import (
    check_curriculum,
    correlation_target,
    curriculum_dataset,
    patient_weights,
    steps_per_epoch,
)
from hg_keras.data.transforms import CohortTransformer
from hg_keras.distribute import describe, is_chief
from hg_keras.errors import InputError
from hg_keras.files import atomic_write
from hg_keras.models import WGANGP, Critic, Generator


def build_wgan(config, transformer, target, recurrent="gate"):
    """Builds and compiles the WGAN-GP for `config` (weights from the global seed).

    Args:
        recurrent: ``gate`` (the model) or ``keras`` (the benchmark's
            ``keras.layers.LSTM`` reference of the same sizes and losses).
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
        name="generator",
    )
    critic = Critic(
        features,
        hidden_units=model.hidden_units,
        recurrent=recurrent,
        masked=config.schema.variable_length,
        name="critic",
    )
    training = config.training
    wgan = WGANGP(
        generator,
        critic,
        target,
        critic_steps=training.critic_steps,
        gradient_penalty_weight=training.gradient_penalty_weight,
        correlation_weight=training.correlation_weight,
        latent_distribution=model.latent_distribution,
        seed=training.seed,
    )

    def adam(name):
        return keras.optimizers.Adam(
            training.learning_rate, beta_1=training.beta_1, beta_2=training.beta_2, name=name
        )

    wgan.compile(generator_optimizer=adam("generator_adam"), critic_optimizer=adam("critic_adam"))
    return wgan


def load_training_cohort(config, data=None, with_holdout=False):
    """The training patients: the first `training.patients` of the cohort, by id.

    Args:
        config: :class:`Config`.
        data: path of a CSV/Parquet cohort, or None for the embedded one.
        with_holdout: bool, also return up to as many of the following
            patients (never trained on), or None when there are none.
    """
    if data is None and config.schema != load_config("art4hiv").schema:
        raise InputError(
            "the embedded cohort is ART for HIV; this config's schema needs --data PATH "
            "(a CSV or Parquet cohort in that schema)"
        )
    frame = load_cohort(data, config.schema if data else None)
    lengths = frame.groupby(config.schema.id, sort=False).size()
    if lengths.nunique() > 1 and not config.schema.variable_length:
        raise InputError(
            f"{data}: patients have {lengths.min()} to {lengths.max()} time steps but the "
            "schema says lengths: fixed; set 'lengths: variable' in the schema to model that"
        )
    ids = frame[config.schema.id].unique()
    wanted = config.training.patients or len(ids)
    if wanted > len(ids):
        source = data or "the embedded cohort"
        raise InputError(f"{source}: asked for {wanted} patients, it has {len(ids)}")
    train_frame = frame[frame[config.schema.id].isin(ids[:wanted])].reset_index(drop=True)
    if not with_holdout:
        return train_frame
    rest = ids[wanted : 2 * wanted]
    holdout = (
        frame[frame[config.schema.id].isin(rest)].reset_index(drop=True) if len(rest) else None
    )
    return train_frame, holdout


def new_run_dir(root="saved_models"):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"run-{stamp}"


def train(config=None, data=None, out=None, resume=False, epochs=None, verbose=None, strategy=None):
    """Trains (or resumes) a run and returns its folder.

    Args:
        config: :class:`Config` of a new run; a resumed run uses its own.
        data: path of a cohort file, or None for the embedded cohort.
        out: run folder; default ``saved_models/run-<time>``.
        resume: bool, continue the run in `out` from its last completed epoch.
        epochs: int, overrides the config's epochs (e.g. to extend a resumed run).
        verbose: Keras verbosity; default a progress bar on a terminal and
            one line per epoch otherwise.
        strategy: ``tf.distribute.Strategy`` (see :mod:`hg_keras.distribute`);
            default the current one. Only its chief writes to `out`; other
            workers read the checkpoint there on resume.

    Returns:
        Path of the run folder.

    Raises:
        InputError: bad data or config, or a run folder that does not match
            the request (existing run without `resume`, or no run with it).
        TrainingError: a non-finite loss; the last good checkpoint is kept.
    """
    out = Path(out) if out else new_run_dir()
    checkpoint_dir = out / "checkpoint"
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    if resume:
        if not (out / "run.json").exists():
            raise InputError(f"{out}: not a training run (no run.json); nothing to resume")
        config = load_config(out / "config.yaml")
        data = data or json.loads((out / "run.json").read_text()).get("data")
    elif chief and (checkpoint_dir.exists() or (out / "run.json").exists()):
        raise InputError(
            f"{out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    elif config is None:
        raise ValueError("a new run needs a config")
    config = config.replace_training(epochs=epochs)

    training = config.training
    keras.utils.set_random_seed(training.seed)
    frame = load_training_cohort(config, data)
    if resume:
        transformer = CohortTransformer.load(out / "transforms.json")
    else:
        transformer = CohortTransformer(config.schema).fit(frame)
    encoded = transformer.encode(frame)
    if np.isnan(encoded).any():
        names = [v.name for v in config.schema.variables if v.missing == "allow"]
        raise InputError(
            f"the cohort has missing values in {', '.join(names) or 'some column'}; "
            "set 'missing: indicator' on those variables to model them"
        )
    patients = encoded.shape[0]
    batch_size = min(training.batch_size, patients)
    if batch_size < training.batch_size:
        print(
            f"note: {patients} patients; batch size lowered from {training.batch_size} "
            f"to {batch_size}",
            file=sys.stderr,
        )
        config = config.replace_training(batch_size=batch_size)

    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise InputError(
            f"batch size {batch_size} does not split over {replicas} replicas; "
            f"choose a training.batch_size divisible by {replicas}"
        )
    # Refuse a cohort the curriculum cannot use before anything is written.
    check_curriculum(encoded, training.curriculum, batch_size)
    start_epoch = completed_epochs(checkpoint_dir)
    if chief:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            save_config(config, out / "config.yaml")
            transformer.save(out / "transforms.json")
        _write_run_info(out, data, patients, checkpoint_dir)

    with strategy.scope():
        wgan = build_wgan(config, transformer, correlation_target(encoded))
    weights = None
    if training.rebalance:
        weights = patient_weights(encoded, transformer.layout.condition_columns)
    dataset = curriculum_dataset(
        encoded,
        training.curriculum,
        batch_size,
        training.seed,
        first_epoch=start_epoch,
        epochs=max(training.epochs - start_epoch, 1),
        weights=weights,
    )
    guard = NonFiniteGuard()
    stopper = StopOnSignal(checkpoint_dir)
    callbacks = [stopper, guard, EpochCheckpoint(str(checkpoint_dir), write=chief)]
    if chief:
        (out / "logs").mkdir(exist_ok=True)
        callbacks += [
            keras.callbacks.CSVLogger(str(out / "logs" / "history.csv"), append=resume),
            keras.callbacks.TensorBoard(str(out / "logs" / "tensorboard"), write_graph=False),
        ]
    steps = steps_per_epoch(patients, training.curriculum, batch_size)
    print(
        f"training on {patients} patients x {encoded.shape[1]} steps, {encoded.shape[2]} "
        f"encoded features; {steps} batches of {batch_size} per epoch; epochs "
        f"{start_epoch + 1}..{training.epochs}; run folder {out}",
        file=sys.stderr,
    )
    print(
        f"{describe(strategy)}; {batch_size // replicas} patients per replica per batch",
        file=sys.stderr,
    )
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    try:
        wgan.fit(
            dataset,
            epochs=training.epochs,
            initial_epoch=start_epoch,
            steps_per_epoch=steps,
            callbacks=callbacks,
            shuffle=False,
            verbose=verbose,
        )
    finally:
        stopper.restore()
        if chief:
            _write_run_info(out, data, patients, checkpoint_dir)
    guard.raise_if_failed(checkpoint_dir)

    if chief:
        save_generator(wgan.generator, out / "generator.keras")
        link_latest(out)
    return out


def save_generator(generator, path):
    """Saves the generator in Keras format, atomically."""
    atomic_write(path, generator.save, suffix=".keras")


def link_latest(run_dir):
    """Points ``<parent>/latest`` at `run_dir` (a relative symlink, replaced atomically)."""
    run_dir = Path(run_dir).resolve()
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def _write_run_info(out, data, patients, checkpoint_dir):
    info = {
        "data": str(data) if data else None,
        "patients": patients,
        "epochs_completed": completed_epochs(checkpoint_dir),
    }
    _write_json(out / "run.json", info)


def _write_json(path, data):
    def write(tmp):
        with open(tmp, "w") as stream:
            json.dump(data, stream, indent=2)

    atomic_write(path, write)
