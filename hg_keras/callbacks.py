"""Training callbacks: per-epoch checkpoints that never keep a diverged state."""

import json
import math
from pathlib import Path

import keras

from hg_keras.errors import TrainingError


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


class EpochCheckpoint(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore at every epoch end, kept after training.

    It saves the WGAN's weights, both optimizers' state (iteration counts
    included) and the epoch, and restores them when ``fit`` starts, so a
    resumed run continues from the last completed epoch. An epoch whose logs
    are not finite is not saved, so the checkpoint stays the last good one.
    """

    def __init__(self, backup_dir):
        super().__init__(
            backup_dir, save_freq="epoch", delete_checkpoint=False, double_checkpoint=True
        )

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and not _finite(logs):
            return
        super().on_epoch_end(epoch, logs)


def completed_epochs(backup_dir):
    """Epochs completed by the checkpoint in `backup_dir` (0 when there is none)."""
    metadata = Path(backup_dir) / "training_metadata.json"
    if not metadata.exists():
        return 0
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (ValueError, KeyError) as error:
        raise TrainingError(f"{metadata}: unreadable checkpoint metadata ({error})") from None
