"""Training callbacks: per-epoch checkpoints that never keep a diverged state."""

import json
import math
import signal
import time
from pathlib import Path

import keras
import numpy as np

from hg_keras.errors import TrainingError, TrainingInterrupted
from hg_keras.files import atomic_write


def _finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite logged value and remembers where."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.failure = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.failure is None and not _finite(logs):
            bad = sorted(k for k, v in logs.items() if not math.isfinite(float(v)))
            self.failure = (self.epoch + 1, batch + 1, bad)
            self.model.stop_training = True

    def raise_if_failed(self, checkpoint_dir):
        if self.failure is not None:
            epoch, step, names = self.failure
            raise TrainingError(
                f"non-finite {', '.join(names)} at epoch {epoch}, step {step}; training stopped. "
                f"The last good checkpoint (end of epoch {epoch - 1}) is kept in {checkpoint_dir}"
            )


class StopOnSignal(keras.callbacks.Callback):
    """Turns SIGINT/SIGTERM into a clean stop after the running batch.

    The interrupted epoch is abandoned before Keras's epoch-end callbacks
    run, so the checkpoint keeps the last completed epoch and the CSV log has
    no partial row; ``--resume`` then repeats the interrupted epoch exactly.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, checkpoint_dir):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.received = None
        self.epoch = 0
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def on_train_begin(self, logs=None):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # Not the main thread: leave signals alone.
                pass

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.received:
            self.restore()
            raise TrainingInterrupted(
                f"{self.received} during epoch {self.epoch + 1} (step {batch + 1}); "
                f"the checkpoint in {self.checkpoint_dir} holds the {self.epoch} completed "
                "epoch(s); continue with --resume"
            )

    def on_train_end(self, logs=None):
        self.restore()

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


STATE = "latest.state.npz"
METADATA = "checkpoint.json"


def training_state(model):
    """Every variable a resumed run needs, in a fixed order.

    The model's weights and seed states (``model.variables``), then each
    optimizer's slots and iteration count: a model with several optimizers
    names them in an ``optimizers`` attribute, any other uses
    ``model.optimizer``.
    """
    optimizers = getattr(model, "optimizers", None) or [model.optimizer]
    variables, seen = [], set()
    for optimizer in [None, *optimizers]:
        for variable in model.variables if optimizer is None else optimizer.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    return variables


def save_state(model, path):
    """Writes `model`'s :func:`training_state` to the ``.npz`` file `path`, atomically."""
    values = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(training_state(model))}
    atomic_write(path, lambda tmp: np.savez(tmp, **values), suffix=".npz")


def restore_state(model, path):
    """Assigns the state saved by :func:`save_state` at `path` to `model`.

    Raises:
        TrainingError: the file is missing or holds another model's state (a
            different count or shape of variables).
    """
    if not Path(path).exists():
        raise TrainingError(
            f"{path}: missing; checkpoint.json names an epoch but its state is not here "
            "(a run folder of an older version kept latest.weights.h5): train in a new folder"
        )
    variables = training_state(model)
    with np.load(path) as saved:
        values = [saved[f"v{i}"] for i in range(len(saved.files))]
    shapes = [tuple(v.shape) for v in variables]
    if [value.shape for value in values] != shapes:
        raise TrainingError(
            f"{path}: the checkpoint holds {len(values)} variables of other shapes than this "
            f"run's {len(variables)}; it was written by another model: train in a new folder"
        )
    for variable, value in zip(variables, values):
        variable.assign(value)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the WGAN at every epoch end and restores it when ``fit`` starts.

    The state file holds both networks and both optimizers' state,
    iteration counts included (:func:`training_state`), so a resumed run
    draws the same noise and batches as an uninterrupted one;
    ``checkpoint.json`` names the last completed epoch. Each is written
    beside itself and renamed, state first, so a kill mid-write leaves the
    last good pair and the metadata never names an epoch the state lacks.
    An epoch whose logs are not finite is not saved. The state is a plain
    array file, not ``save_weights``: walking the Keras object tree cost
    more than a whole update on a small cohort, where every epoch is a
    batch or two.

    Args:
        folder: str or Path of the checkpoint.
        write: bool; False on the workers of a multi-worker run other than
            the chief, which restore from the checkpoint but never write it.
    """

    def __init__(self, folder, write=True):
        super().__init__()
        self.folder = Path(folder)
        self.write = write

    def on_train_begin(self, logs=None):
        if (self.folder / METADATA).exists():
            restore_state(self.model, self.folder / STATE)

    def on_epoch_end(self, epoch, logs=None):
        if not self.write or (self.model.stop_training and not _finite(logs)):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        save_state(self.model, self.folder / STATE)
        metadata = json.dumps({"epoch": epoch + 1})
        atomic_write(self.folder / METADATA, lambda tmp: Path(tmp).write_text(metadata))


def completed_epochs(folder):
    """Epochs completed by the checkpoint in `folder` (0 when there is none)."""
    metadata = Path(folder) / METADATA
    if not metadata.exists():
        return 0
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (ValueError, KeyError) as error:
        raise TrainingError(f"{metadata}: unreadable checkpoint metadata ({error})") from None


class TimeBudget(keras.callbacks.Callback):
    """Stops training after `seconds` of wall-clock time, saving generator snapshots on the way.

    With `at_epoch_end` the run stops at the first epoch end past the
    budget (``training.minutes``), so its checkpoint holds whole epochs.

    Comparing configurations "within the same time budget" needs each run
    stopped at the same training time, and a metric-against-time curve needs
    the generator at several times: at each of `snapshot_times` (seconds
    since training began) the generator (its weight average, when
    ``training.generator_average`` keeps one, as the run's final
    generator is) is saved to ``<folder>/generator-<k>.keras`` and
    ``(k, seconds, generator updates)`` is appended to :attr:`snapshots`.
    The clock starts at the first batch, so graph tracing counts as
    training time.

    Args:
        seconds: float, the budget.
        snapshot_times: increasing floats within the budget; the budget
            itself is always a snapshot.
        folder: str or Path for the snapshots, or None to save none.
        at_epoch_end: bool, stop at an epoch end rather than after a batch.
    """

    def __init__(self, seconds, snapshot_times=(), folder=None, at_epoch_end=False):
        super().__init__()
        self.seconds = float(seconds)
        self.at_epoch_end = at_epoch_end
        self.snapshot_times = sorted({*map(float, snapshot_times), self.seconds})
        self.folder = Path(folder) if folder else None
        self.snapshots = []
        self.start = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self.start
        while self.snapshot_times and elapsed >= self.snapshot_times[0]:
            self.snapshot_times.pop(0)
            self._snapshot(elapsed)
        if elapsed >= self.seconds and not self.at_epoch_end:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.at_epoch_end and time.perf_counter() - self.start >= self.seconds:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        # Stopped before the budget (epochs ran out): the end is the last snapshot.
        if self.start is not None and (not self.snapshots or self.snapshot_times):
            self.snapshot_times = []
            self._snapshot(time.perf_counter() - self.start)

    def _snapshot(self, elapsed):
        k = len(self.snapshots)
        updates = int(self.model.generator_optimizer.iterations.numpy())
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.model.generator.save(self.folder / f"generator-{k}.keras")
        self.snapshots.append((k, float(elapsed), updates))
