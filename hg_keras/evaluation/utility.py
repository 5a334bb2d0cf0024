"""Utility: can the synthetic cohort stand in for the real one in analysis?

Both scores follow TimeGAN (Yoon et al., NeurIPS 2019): a post-hoc
recurrent classifier tells real from synthetic (discriminative score), and a
recurrent next-step predictor is trained on synthetic and tested on real
(TSTR), against the same predictor trained on real (TRTR).

Three things make the scores mean the same on every cohort. The classifier
sees as many real as synthetic patients (TimeGAN draws each batch half and
half): on unequal sets it learns the majority share and scores it whatever
the generator does. Every network trains until its loss on a validation
split of its own training data stops improving (Keras ``EarlyStopping``,
best weights kept), not for a fixed number of epochs: an under-trained
judge under-scores the gap. And every input feature is standardized, so a
cue in a narrow numeric is not drowned by wide one-hot columns.
"""

import contextlib
import logging

import keras
import numpy as np
import tensorflow as tf
from sklearn.model_selection import StratifiedKFold, train_test_split

# Early stopping: epochs without a validation loss lower by MIN_DELTA, and the
# ceiling; and the reference size below which every patient is tested once by
# k-fold instead of one split.
PATIENCE = 10
MIN_DELTA = 1e-4
MAX_EPOCHS = 200
# Updates before early stopping may act: a few batches per epoch stay on the
# loss's initial plateau for more than `PATIENCE` epochs.
MIN_UPDATES = 100
KFOLD_BELOW = 200
FOLDS = 5
# Inputs are standardized feature by feature; a feature whose spread on the
# training part is below this is divided by it instead (a rare level seen
# once must not become a 1,000-fold input).
MIN_SCALE = 0.05


def _gru_model(features, hidden, outputs, activation, sequences):
    inputs = keras.Input((None, features))
    x = keras.layers.GRU(hidden, return_sequences=sequences)(inputs)
    return keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(x))


class _NoRetracingWarning(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning.

    Every judge and predictor is a new network whose train and predict
    steps are traced once, by design; TensorFlow counts the traces of all
    of them together (they share Keras's code) and warned every evaluation
    of retracing that is not there.
    """

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _one_trace_per_network():
    logger, quiet = tf.get_logger(), _NoRetracingWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


class _Judge:
    """One compiled GRU network, trained afresh by each :meth:`fit`.

    Its inputs are standardized feature by feature with the mean and spread
    of each fit's training part: encoded numerics spread over a tenth of
    [0, 1] where one-hot columns span all of it, and a GRU reading both
    unscaled misses what the numerics alone give away.

    Building and compiling a Keras model traces its train, validation and
    predict functions, seconds each on a CPU: k folds reuse one network and
    put its initial weights and optimizer state back instead.
    """

    def __init__(self, features, outputs, activation, sequences, loss, seed):
        keras.utils.set_random_seed(seed)
        self.model = _gru_model(features, max(features // 2, 4), outputs, activation, sequences)
        self.model.compile(keras.optimizers.Adam(1e-2), loss)
        self.model.optimizer.build(self.model.trainable_variables)
        self.initial = [v.numpy() for v in self.model.variables + self.model.optimizer.variables]
        self.seed = seed

    def fit(self, x, y, stratify=None, max_epochs=MAX_EPOCHS):
        """Adam from the initial state until the loss on a 20 % validation split of
        (x, y) stops improving; the best epoch's weights are kept."""
        for variable, value in zip(
            self.model.variables + self.model.optimizer.variables, self.initial
        ):
            variable.assign(value)
        x_fit, x_val, y_fit, y_val = train_test_split(
            x, y, test_size=0.2, random_state=self.seed, stratify=stratify
        )
        pooled = x_fit.reshape(-1, x_fit.shape[-1])
        self.center, self.scale = pooled.mean(0), np.maximum(pooled.std(0), MIN_SCALE)
        x_fit, x_val = self._standardized(x_fit), self._standardized(x_val)
        # Small sets get smaller batches, so an epoch is several updates.
        batch_size = int(np.clip(len(x_fit) // 8, 16, 128))
        batches = -(-len(x_fit) // batch_size)
        fit_data = batched(x_fit, y_fit, batch_size, shuffle_seed=self.seed)
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=PATIENCE,
            min_delta=MIN_DELTA,
            restore_best_weights=True,
            start_from_epoch=min(-(-MIN_UPDATES // batches), max_epochs - 1),
        )
        with _one_trace_per_network():
            self.model.fit(
                fit_data,
                validation_data=batched(x_val, y_val, batch_size),
                epochs=max_epochs,
                shuffle=False,  # the dataset reshuffles itself
                callbacks=[stop],
                verbose=0,
            )

    def predict(self, x):
        """The fitted network's outputs for `x`."""
        with _one_trace_per_network():
            return self.model.predict(batched(self._standardized(x), None, 512), verbose=0)

    def _standardized(self, x):
        return ((x - self.center) / self.scale).astype(np.float32)


def batched(x, y, batch_size, shuffle_seed=None):
    """`(x, y)` (or `x`) as a dataset of batches whose size is unknown to the graph,
    reshuffled every epoch when given a seed.

    Keras traces its train, test and predict functions again for every new
    set or last-batch size when given arrays (seconds each on a CPU, for
    every fold and every set the judge sees); an unknown batch dimension is
    traced once per network.
    """
    data = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    if shuffle_seed is not None:
        data = data.shuffle(len(x), seed=shuffle_seed)
    return data.batch(batch_size)


def balanced(real, synthetic, seed=0):
    """Both sets cut to the smaller one's size, each by a seeded random choice."""
    n = min(len(real), len(synthetic))
    rng = np.random.default_rng(seed)
    return tuple(x[np.sort(rng.choice(len(x), n, replace=False))] for x in (real, synthetic))


def discriminative_score(real, synthetic, seed=0, max_epochs=MAX_EPOCHS):
    """``|accuracy - 0.5|`` of a GRU classifier telling real from synthetic patients.

    The two sets are cut to equal size (:func:`balanced`), so guessing the
    majority scores 0. With fewer than ``KFOLD_BELOW`` patients a side,
    every patient is tested once by stratified `FOLDS`-fold; otherwise one
    stratified 80/20 split. Each fold's one-layer GRU (``max(features // 2,
    4)`` units, 1 = real) trains until its validation loss stops improving.
    0 means indistinguishable, 0.5 trivially separable.

    Args:
        real, synthetic: arrays `(patients, time, features)` of one time length.
        seed: int, seeds the balancing, the folds and the classifiers.
    """
    real, synthetic = balanced(real, synthetic, seed)
    x = np.concatenate([real, synthetic]).astype(np.float32)
    y = np.concatenate([np.ones(len(real)), np.zeros(len(synthetic))]).astype(np.float32)
    if len(real) < KFOLD_BELOW:
        splits = StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(x, y)
    else:
        cut = train_test_split(np.arange(len(x)), test_size=0.2, random_state=seed, stratify=y)
        splits = [cut]
    judge = _Judge(x.shape[2], 1, "sigmoid", False, "binary_crossentropy", seed)
    correct = tested = 0
    for train, test in splits:
        judge.fit(x[train], y[train], y[train], max_epochs)
        predicted = judge.predict(x[test])[:, 0] > 0.5
        correct += int(np.sum(predicted == y[test]))
        tested += len(test)
    return float(abs(correct / tested - 0.5))


def predictive_scores(
    synthetic, real_train, real_test, numeric_columns, seed=0, max_epochs=MAX_EPOCHS
):
    """Next-month prediction of the numerics: train on synthetic vs on real, test on real.

    A GRU reads months 0..T-2 (all features) and predicts the numeric
    columns of months 1..T-1, trained until its loss on a validation split
    of its own training set stops improving; the error is the mean absolute
    error on the transformed [0, 1] scale over `real_test`.

    Returns:
        dict ``tstr_mae``, ``trtr_mae`` and ``tstr_ratio`` (TSTR / TRTR;
        1 means the synthetic data is as useful as the real for this task).
    """
    numeric_columns = list(numeric_columns)
    test_x = real_test[:, :-1].astype(np.float32)
    test_y = real_test[:, 1:, numeric_columns].astype(np.float32)
    errors = {}
    judge = _Judge(real_test.shape[2], len(numeric_columns), "sigmoid", True, "mae", seed)
    for name, data in (("tstr_mae", synthetic), ("trtr_mae", real_train)):
        x = data[:, :-1].astype(np.float32)
        judge.fit(x, data[:, 1:, numeric_columns].astype(np.float32), None, max_epochs)
        predicted = judge.predict(test_x)
        errors[name] = float(np.mean(np.abs(predicted - test_y)))
    errors["tstr_ratio"] = errors["tstr_mae"] / max(errors["trtr_mae"], 1e-12)
    return errors
