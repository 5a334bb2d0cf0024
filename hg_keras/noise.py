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
