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
        patient_latent_dim=model.patient_latent_dim,
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
        target,
        critic_steps=training.critic_steps,
        gradient_penalty_weight=training.gradient_penalty_weight,
        correlation_weight=training.correlation_weight,
        latent_distribution=model.latent_distribution,
        seed=training.seed,
        marginal_weight=training.marginal_weight,
        temporal_weight=training.temporal_weight,
        renewal=renewal_rates(model.discrete_output, transformer),
        straight_through=training.straight_through,
    )

    def adam(name, rate):
        return keras.optimizers.Adam(
            rate, beta_1=training.beta_1, beta_2=training.beta_2, name=name
        )

    critic_rate = training.critic_learning_rate or training.learning_rate
    wgan.compile(
        generator_optimizer=adam("generator_adam", training.learning_rate),
        critic_optimizer=adam("critic_adam", critic_rate),
    )
    return wgan


def renewal_rates(discrete_output, transformer):
    """Per time-varying discrete block, the sampler's renewal rate (None for argmax)."""
    dynamic = [b for b in transformer.layout.discrete_blocks if not b.static]
    if discrete_output == "sample":
        return [1.0] * len(dynamic)
    if discrete_output == "persistent":
        return [transformer.renewal_rates.get(b.name, 1.0) for b in dynamic]
    return None


def load_training_cohort(config, data=None, with_holdout=False):
    """The training patients, and optionally the held-out ones.

    A user's cohort first loses its holdout (``training.holdout``: a
    fraction or a count of patients, drawn by the training seed within each
    group of static discrete attributes), then trains on the first
    ``training.patients`` of the rest, by id. The embedded cohort has far
    more patients than a CPU run uses, so its holdout is the patients that
    follow the training ones (as many, never trained on).

    Args:
        config: :class:`Config`.
        data: path of a CSV/Parquet cohort, or None for the embedded one.
        with_holdout: bool, also return the holdout frame (None when
            ``training.holdout`` is 0 or no patient is left for it).
    """
    if data is None and config.schema != load_config("art4hiv").schema:
        raise InputError(
            "the embedded cohort is ART for HIV; this config's schema needs --data PATH "
            "(a CSV or Parquet cohort in that schema)"
        )
    frame = load_cohort(data, config.schema if data else None)
    schema = config.schema
    lengths = frame.groupby(schema.id, sort=False).size()
    if lengths.nunique() > 1 and not schema.variable_length:
        raise InputError(
            f"{data}: patients have {lengths.min()} to {lengths.max()} time steps but the "
            "schema says lengths: fixed; set 'lengths: variable' in the schema to model that"
        )
    ids = frame[schema.id].unique()
    holdout = config.training.holdout
    held = np.array([], dtype=ids.dtype)
    if data is not None and holdout:
        ids, held = _split_holdout(frame, schema, ids, holdout, config.training.seed, data)
    wanted = config.training.patients or len(ids)
    if wanted > len(ids):
        source = data or "the embedded cohort"
        kept = f" after holding out {len(held)} (training.holdout)" if len(held) else ""
        raise InputError(f"{source}: asked for {wanted} patients, it has {len(ids)}{kept}")
    train_frame = frame[frame[schema.id].isin(ids[:wanted])].reset_index(drop=True)
    if not with_holdout:
        return train_frame
    if data is None and holdout:
        held = ids[wanted : 2 * wanted]
    holdout_frame = frame[frame[schema.id].isin(held)].reset_index(drop=True)
    return train_frame, (holdout_frame if len(held) else None)


def _split_holdout(frame, schema, ids, holdout, seed, source):
    """(training ids, holdout ids), the holdout drawn within static groups."""
    from sklearn.model_selection import train_test_split

    count = int(round(holdout * len(ids))) if holdout < 1 else int(holdout)
    if not 1 <= count <= len(ids) - 1:
        raise InputError(
            f"{source}: training.holdout {holdout:g} would hold out {count} of {len(ids)} "
            "patients; it must leave at least one for training and hold out at least one "
            "(or be 0 to train on every patient)"
        )
    static = [v.name for v in schema.variables if v.static and not v.is_numeric]
    groups = None
    if static:
        first = frame.groupby(schema.id, sort=False)[static].first().loc[ids]
        groups = first.astype(str).agg("|".join, axis=1).to_numpy()
        # Groups too small to be split both ways are pooled; if that is
        # still too few, the draw is not stratified.
        sizes = dict(zip(*np.unique(groups, return_counts=True)))
        groups = np.array([g if sizes[g] >= 2 else "rare" for g in groups])
        levels, counts = np.unique(groups, return_counts=True)
        if counts.min() < 2 or len(levels) > min(count, len(ids) - count):
            groups = None
    train_ids, held = train_test_split(ids, test_size=count, random_state=seed, stratify=groups)
    order = {patient: k for k, patient in enumerate(ids)}
    return np.array(sorted(train_ids, key=order.get)), np.array(sorted(held, key=order.get))


def new_run_dir(root="saved_models"):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"run-{stamp}"


def train(
    config=None,
    data=None,
    out=None,
    resume=False,
    epochs=None,
    verbose=None,
    strategy=None,
    callbacks=(),
):
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
        callbacks: extra Keras callbacks for ``fit`` (e.g. a time budget).

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
    frame, holdout = load_training_cohort(config, data, with_holdout=True)
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
            write_holdout_ids(out, config, holdout)
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
    extra = list(callbacks)
    callbacks = [stopper, guard, EpochCheckpoint(str(checkpoint_dir), write=chief), *extra]
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


HOLDOUT_FILE = "holdout.json"


def write_holdout_ids(out, config, holdout):
    """Writes ``holdout.json``: the ids of the patients kept out of training."""
    ids = [] if holdout is None else holdout[config.schema.id].unique().tolist()
    _write_json(
        Path(out) / HOLDOUT_FILE,
        {"ids": [i.item() if hasattr(i, "item") else i for i in ids], "patients": len(ids)},
    )


def read_holdout_ids(run_dir):
    """The held-out patient ids of a run, or None for a run without ``holdout.json``."""
    path = Path(run_dir) / HOLDOUT_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())["ids"]


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
