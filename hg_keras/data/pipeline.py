"""tf.data pipelines for the curriculum, and the cohort-wide targets of the losses.

Health Gym v1 trains every epoch on the first L months of every patient for
L = 10, 20, ..., 60 in turn, each length in shuffled batches of 256 with the
remainder dropped. Batches of one epoch therefore have different time
lengths; the dataset's time axis is `None` so the train step traces once.
"""

import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_sample_weight

from hg_keras.data.transforms import PAD
from hg_keras.errors import InputError
from hg_keras.losses import pooled_correlation


def check_curriculum(encoded, curriculum, batch_size):
    """Raises InputError when the cohort cannot feed the curriculum."""
    patients, steps = encoded.shape[0], encoded.shape[1]
    if max(curriculum) > steps:
        raise InputError(
            f"patients have {steps} time steps but the curriculum needs {max(curriculum)}; "
            "shorten training.curriculum"
        )
    if patients < batch_size:
        raise InputError(
            f"{patients} patients cannot fill one batch of {batch_size}; "
            "lower training.batch_size or train on more patients"
        )


def default_curriculum(steps):
    """Prefix lengths for patients of up to `steps` steps: every tenth step, then `steps`.

    Health Gym v1 walks 10, 20, ..., 60 months of its 60-month cohort; a
    16-visit cohort gets 10 and 16, a 6-visit one 6.
    """
    return tuple(range(10, steps, 10)) + (int(steps),)


def steps_per_epoch(patients, curriculum, batch_size):
    """Batches in one epoch: every curriculum length, remainder dropped."""
    return len(curriculum) * (patients // batch_size)


def curriculum_dataset(
    encoded,
    curriculum,
    batch_size,
    seed,
    first_epoch=0,
    epochs=1,
    weights=None,
    poisson=False,
):
    """Batches of `epochs` curriculum epochs in a row, starting at `first_epoch`.

    The batches of epoch `e` depend only on `(seed, e)`, never on how often
    the dataset has been iterated, so a run resumed at epoch `e` sees the
    same batches as an uninterrupted one, and so does a distributed run
    (``tf.distribute`` may open extra iterators). Train on it with
    ``fit(..., steps_per_epoch=steps_per_epoch(...))``: Keras then keeps one
    iterator across epochs.

    Args:
        encoded: float32 array `(patients, time, features)`.
        curriculum: sequence of prefix lengths, walked in order every epoch.
        batch_size: int, the global batch; the remainder of each length is dropped.
        seed: int.
        first_epoch: int, index of the first epoch.
        epochs: int, number of epochs.
        weights: optional float array `(patients,)`: each epoch then draws its
            patients with these probabilities, with replacement
            (:func:`patient_weights` rebalances groups), instead of a permutation.
        poisson: bool, each batch takes every patient independently with
            probability ``batch_size / patients`` (Poisson sampling, what a
            private run's accountant assumes), so batch sizes vary.

    Returns:
        ``tf.data.Dataset`` of `(batch_size, L, features)` float32 tensors
        (`(None, L, features)` with `poisson`).
    """
    encoded = np.ascontiguousarray(encoded, dtype=np.float32)
    check_curriculum(encoded, curriculum, batch_size)
    patients, features = encoded.shape[0], encoded.shape[2]
    per_length = patients // batch_size

    def batches(epoch):
        rng = np.random.default_rng([seed, int(epoch)])
        for length in curriculum:
            if weights is None:
                order = rng.permutation(patients)
            else:
                order = rng.choice(patients, size=patients, p=weights)
            for k in range(per_length):
                if poisson:
                    yield encoded[rng.random(patients) < batch_size / patients, :length]
                else:
                    yield encoded[order[k * batch_size : (k + 1) * batch_size], :length]

    signature = tf.TensorSpec((None if poisson else batch_size, None, features), tf.float32)
    dataset = tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(
        lambda epoch: tf.data.Dataset.from_generator(
            batches, args=(epoch,), output_signature=signature
        )
    )
    steps = steps_per_epoch(patients, curriculum, batch_size) * epochs
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    # Every worker builds the same batches; each takes its replicas' slices.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(2)


def _present(encoded):
    """`(patients, time)` bool: the months a patient has (not :data:`PAD` padding)."""
    return ~np.all(encoded == PAD, axis=-1)


def correlation_target(encoded, steps=None):
    """Pearson matrix of the encoded features pooled over patients and time.

    The same clamped formula as the generator loss
    (:func:`hg_keras.losses.pooled_correlation`), computed in float64;
    padded steps (variable-length patients) do not count.

    Args:
        encoded: array `(patients, time, features)`.
        steps: int, only the first `steps` months (default: all).
    """
    encoded = np.asarray(encoded[:, :steps], dtype=np.float64)
    rows = encoded[_present(encoded)]
    return pooled_correlation(tf.constant(rows)).numpy().astype(np.float32)


def patient_weights(encoded, columns):
    """Sampling weights that make every group of the given one-hot columns equally likely.

    Args:
        encoded: array `(patients, time, features)`.
        columns: encoded columns of the static discrete attributes.

    Returns:
        float array `(patients,)` summing to 1.
    """
    groups = np.unique(np.asarray(encoded)[:, 0, list(columns)], axis=0, return_inverse=True)[1]
    weights = compute_sample_weight("balanced", groups.reshape(-1))
    return weights / weights.sum()
