"""Drawing a chunk of synthetic patients: the one function behind every sample.

``sample`` (eagerly) and the SavedModel's ``serving_default`` (inside its
graph) both call :meth:`PatientDraw.__call__`, so "the same seed gives the
same patients" holds by construction: lengths, latent noise, static groups
and discrete levels are all drawn here from one `(seed, chunk)` pair, with
the seed streams of :mod:`hg_keras.noise`.
"""

import numpy as np
import tensorflow as tf

from hg_keras import noise
from hg_keras.conditions import group_table, length_table
from hg_keras.data.transforms import PAD
from hg_keras.layers.carry_forward import CarryForward
from hg_keras.layers.gate_lstm import first_order_only

# Patients drawn to calibrate the renewal rates (:meth:`PatientDraw.calibrate`).
CALIBRATION_PATIENTS = 1024


class PatientDraw:
    """What a run draws its patients with: generator, length and group tables.

    Args:
        generator: the run's :class:`hg_keras.models.Generator`.
        transformer: the run's fitted :class:`CohortTransformer`.
        latent_distribution: ``uniform`` or ``normal`` (``model.latent_distribution``).
        discrete_output: ``argmax``, ``sample``, ``persistent`` or ``joint``
            (``model.discrete_output``).
        where: dict name -> code of static attributes to draw (conditional runs).
        renewal: dict block name -> renewal rate replacing the transformer's
            (a run's calibrated rates, :meth:`calibrate`); persistent draws only.

    Raises:
        InputError: `where` matches no training group.
    """

    def __init__(
        self,
        generator,
        transformer,
        latent_distribution,
        discrete_output,
        where=None,
        renewal=None,
    ):
        self.generator = generator
        self.layout = transformer.layout
        self.latent_distribution = latent_distribution
        self.discrete_output = discrete_output
        persistent = discrete_output in ("persistent", "joint")
        self.renewal = dict(renewal or transformer.renewal_rates) if persistent else None
        self.switch_rates = transformer.switch_rates
        self.lengths = length_table(transformer) if transformer.schema.variable_length else None
        self.groups = group_table(transformer, where) if generator.conditional else None
        carried = self.layout.carried
        self.carry_forward = CarryForward(carried, hard=True) if carried else None

    def __call__(self, size, steps, seed_pair, draw_lengths=True):
        """One chunk: `size` patients of `steps` steps keyed by `seed_pair`.

        Works eagerly and inside a ``tf.function`` (all TensorFlow ops).

        Args:
            size: int or int32 scalar tensor.
            steps: int or int32 scalar tensor, the longest length.
            seed_pair: int64 tensor `(2,)`: `(seed, chunk index)`.
            draw_lengths: bool; a variable-length run draws each patient's
                length from the training lengths (capped at `steps`) when
                True, and gives every patient `steps` when False.

        Returns:
            (encoded float32 tensor `(size, steps, features)` with :data:`PAD`
            past each patient's length, int32 tensor `(size,)` of lengths).
        """
        encoded, lengths = self._generate(size, steps, seed_pair, draw_lengths)
        if self.discrete_output != "argmax":
            encoded = noise.draw_levels(encoded, self.layout, seed_pair, self.renewal)
        if self.carry_forward is not None:
            encoded = self.carry_forward(encoded)
        valid = tf.sequence_mask(lengths, steps)[..., None]
        return tf.where(valid, encoded, PAD), lengths

    def calibrate(self, steps, seed_pair, size=CALIBRATION_PATIENTS):
        """Sets each persistent block's renewal rate net of the generator's drift.

        Draws `size` patients' probabilities and replaces the rates with
        :func:`hg_keras.noise.net_renewal` for the data's switch shares
        (``transformer.switch_rates``), so the drawn levels switch as often as
        the data's do rather than that plus the drift. Eager only.

        Returns:
            dict block name -> rate (None for draws that are not persistent).
        """
        if self.renewal is None or not self.switch_rates:
            return self.renewal
        encoded, lengths = self._generate(size, steps, seed_pair)
        encoded, lengths = encoded.numpy(), lengths.numpy()
        pairs = np.arange(encoded.shape[1] - 1)[None, :] < lengths[:, None] - 1
        for block in self.layout.dynamic_blocks:
            if block.name in self.switch_rates:
                self.renewal[block.name] = noise.net_renewal(
                    encoded[..., block.start : block.end], pairs, self.switch_rates[block.name]
                )
        return dict(self.renewal)

    def _generate(self, size, steps, seed_pair, draw_lengths=True):
        """(generated probabilities and values before any level is drawn, lengths)."""
        # The noise always spans `steps`; lengths only mask it. A patient is
        # then the same whatever the lengths of the others in its chunk.
        if self.lengths is not None and draw_lengths:
            values, probabilities = self.lengths
            picks = noise.draw_categories(probabilities, size, seed_pair + [0, noise.LENGTH_STREAM])
            lengths = tf.minimum(tf.gather(values, picks), steps)
        else:
            lengths = tf.fill([size], tf.cast(steps, tf.int32))
        valid = tf.sequence_mask(lengths, steps)[..., None]
        inputs = noise.latent_noise(
            size, steps, self.generator.latent_dim, seed_pair, self.latent_distribution
        )
        if self.generator.masked:
            inputs = tf.where(valid, inputs, PAD)
        if self.groups is not None:
            table, probabilities = self.groups
            picks = noise.draw_categories(probabilities, size, seed_pair + [0, noise.GROUP_STREAM])
            inputs = [inputs, tf.gather(table, picks)]
        with first_order_only():
            return self.generator(inputs, training=False), lengths
