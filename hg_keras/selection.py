"""Which generator a run releases: the snapshot its validation patients find hardest to tell apart.

A WGAN-GP's critic keeps finding new cues, so the last generator is not
always the best one: a longer run can sharpen the marginals while growing
easier to tell apart. RCGAN (Esteban et al. 2017) chose its released epoch
on a validation set; here a few training patients are kept out of the GAN's
batches (``training.validation``) and, at evenly spaced points of the budget,
the generator's patients are scored against them by the package's own
discriminative judge. The lowest score is the run's generator. The holdout
is never used: it stays the unbiased test of the released generator.
"""

import json
import logging
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from hg_keras.drawing import PatientDraw
from hg_keras.evaluation.evaluate import discriminative
from hg_keras.evaluation.utility import MAX_EPOCHS
from hg_keras.files import atomic_write

log = logging.getLogger(__name__)

STATE = "selection.json"
BEST = "best.weights.h5"


def check_epochs(planned, checks):
    """The 1-based epochs ending each of `checks` equal parts of `planned` epochs."""
    return sorted({max(1, math.ceil(k * planned / checks)) for k in range(1, checks + 1)})


class BestSnapshot(keras.callbacks.Callback):
    """Scores the generator at chosen epoch ends and releases the best one.

    At each epoch of `epochs` (or every `seconds` of training, for a budget
    in minutes), and at the epoch where training stops, the generator draws
    as many patients as there are validation patients (the same noise each
    time) and :func:`hg_keras.evaluation.evaluate.discriminative` scores
    them. The best generator's weights and every score are kept in `folder`
    (``best.weights.h5``, ``selection.json``; written atomically), so a
    resumed run goes on comparing with them. When training ends the best
    generator's weights are put back into the model.

    Args:
        validation: long-format frame of the validation patients.
        transformer: the run's fitted ``CohortTransformer``.
        model_config: the run's ``ModelConfig`` (noise and discrete output).
        steps: int, the longest patient length trained on.
        folder: Path for the best weights and the scores.
        epochs: 1-based epochs to score at.
        seconds: float or None, also score every this many seconds.
        seed: int, seeds the drawn patients and the judge.
        max_epochs: int, the judge's ceiling of epochs (it stops earlier
            once its validation loss stops improving).
        write: bool; False on the non-chief workers of a multi-worker run.
    """

    def __init__(
        self,
        validation,
        transformer,
        model_config,
        steps,
        folder,
        epochs=(),
        seconds=None,
        seed=0,
        max_epochs=MAX_EPOCHS,
        write=True,
    ):
        super().__init__()
        self.validation = validation
        self.transformer = transformer
        self.model_config = model_config
        self.steps = int(steps)
        self.folder = Path(folder)
        self.epochs = set(epochs)
        self.seconds = seconds
        self.seed = seed
        self.max_epochs = max_epochs
        self.write = write
        self.checks = []
        self.last_check = None

    @property
    def best(self):
        """The best check so far (a dict: epoch, updates, score), or None."""
        scored = [c for c in self.checks if np.isfinite(c["score"])]
        return min(scored, key=lambda c: (c["score"], -c["epoch"])) if scored else None

    def on_train_begin(self, logs=None):
        self.last_check = time.perf_counter()
        if (self.folder / STATE).exists():
            self.checks = json.loads((self.folder / STATE).read_text())["checks"]

    def on_epoch_end(self, epoch, logs=None):
        timed = self.seconds is not None and time.perf_counter() - self.last_check >= self.seconds
        if epoch + 1 in self.epochs or timed or self.model.stop_training:
            self.check(epoch + 1)

    def check(self, epoch):
        """Scores the current generator as the snapshot of `epoch`."""
        self.last_check = time.perf_counter()
        score = self.score(self.model.generator)
        updates = int(self.model.generator_optimizer.iterations.numpy())
        previous = self.best
        self.checks = [c for c in self.checks if c["epoch"] != epoch]
        self.checks.append({"epoch": epoch, "updates": updates, "score": score})
        improved = np.isfinite(score) and (previous is None or score <= previous["score"])
        log.info(
            "snapshot at update %d: validation discriminative %.3f%s",
            updates,
            score,
            " (best so far)" if improved else f" (best {previous['score']:.3f})",
        )
        if not self.write:
            return
        if improved:
            atomic_write(
                self.folder / BEST, self.model.generator.save_weights, suffix=".weights.h5"
            )
        state = json.dumps({"checks": self.checks, "best": self.best}, indent=1)
        atomic_write(self.folder / STATE, lambda tmp: Path(tmp).write_text(state))

    def score(self, generator):
        """The discriminative score of `generator`'s patients against the validation ones."""
        draw = PatientDraw(
            generator,
            self.transformer,
            self.model_config.latent_distribution,
            self.model_config.discrete_output,
        )
        size = self.validation[self.transformer.schema.id].nunique()
        seed_pair = tf.constant([self.seed, 0], tf.int64)
        draw.calibrate(self.steps, seed_pair)  # as the released generator will draw
        encoded, lengths = draw(size, self.steps, seed_pair)
        synthetic = self.transformer.decode(
            np.asarray(encoded), patient_ids=np.arange(size), lengths=np.asarray(lengths)
        )
        schema = self.transformer.schema
        return discriminative(self.validation, synthetic, schema, self.seed, self.max_epochs)

    def on_train_end(self, logs=None):
        best = self.best
        if best is None or not (self.folder / BEST).exists():
            return
        latest = max(self.checks, key=lambda c: c["epoch"])
        if best["epoch"] != latest["epoch"]:
            self.model.generator.load_weights(self.folder / BEST)
        log.info(
            "released the generator of update %d (validation discriminative %.3f; "
            "the last scored %.3f)",
            best["updates"],
            best["score"],
            latest["score"],
        )
