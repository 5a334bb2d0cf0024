"""Latent noise, drawn statelessly so a seed fixes it everywhere.

Training, ``sample`` and the exported SavedModel all draw noise here, keyed
by an explicit seed pair instead of a stateful generator: the same seed gives
the same noise in every process, and nothing mutable is saved in a model.
"""

import tensorflow as tf


def latent_noise(patients, steps, latent_dim, seed, distribution="uniform"):
    """Stateless latent noise `(patients, steps, latent_dim)`.

    Args:
        seed: int32/int64 tensor or pair of shape (2,).
        distribution: ``uniform`` (v1's U[0, 1)) or ``normal``.
    """
    shape = tf.stack([patients, steps, latent_dim])
    if distribution == "uniform":
        return tf.random.stateless_uniform(shape, seed=seed)
    return tf.random.stateless_normal(shape, seed=seed)


def draw_categories(probabilities, count, seed):
    """`count` stateless draws of indices with the given probabilities (int32 tensor).

    Used for synthetic patients' lengths and static groups, in ``sample`` and
    in the SavedModel alike, so both draw the same patients for a seed.

    Args:
        probabilities: 1-D array or tensor summing to 1.
        count: int or scalar tensor.
        seed: int64 tensor of shape (2,).
    """
    logits = tf.math.log(tf.cast(tf.convert_to_tensor(probabilities), tf.float64))[None]
    return tf.random.stateless_categorical(logits, count, seed=seed, dtype=tf.int32)[0]
