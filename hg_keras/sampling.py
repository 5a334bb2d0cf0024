"""Sampling synthetic patients from a trained run, streamed to CSV or Parquet.

Noise is drawn statelessly from ``(seed, chunk index)``: the same seed gives
the same file, and a run's SavedModel (``serving_default`` with the same
`seed`) gives the same patients.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from hg_keras.conditions import group_table, length_table
from hg_keras.config import load_config
from hg_keras.data.transforms import PAD, CohortTransformer
from hg_keras.errors import InputError
from hg_keras.evaluation.privacy import patient_fingerprints
from hg_keras.files import atomic_write
from hg_keras.noise import draw_categories, latent_noise

# Patients generated at a time: about 0.5 GB of activations on a CPU.
CHUNK_PATIENTS = 2_000
# Offsets that keep the length and static-group draws apart from the noise.
LENGTH_STREAM = 3_000_017
GROUP_STREAM = 4_000_037
LEVEL_STREAM = 5_000_011


def draw_levels(encoded, layout, seed_pair):
    """Replaces each discrete block's probabilities by a one-hot level drawn from them.

    Static blocks get one draw per patient, so they stay constant over time.
    TF ops: ``sample`` and the SavedModel share it, and so draw the same codes.

    Args:
        encoded: float tensor `(patients, steps, features)` from the generator.
        layout: :class:`FeatureLayout`.
        seed_pair: int64 tensor of shape (2,).
    """
    blocks = layout.discrete_blocks
    if not blocks:
        return encoded
    shape = tf.shape(encoded)
    uniforms = tf.random.stateless_uniform(
        tf.stack([shape[0], shape[1], len(blocks)]),
        seed=seed_pair + [0, LEVEL_STREAM],
        dtype=encoded.dtype,
    )
    static = tf.constant([b.static for b in blocks])
    uniforms = tf.where(static, uniforms[:, :1, :], uniforms)
    parts = [encoded[..., : layout.numeric_width]]
    for j, block in enumerate(blocks):
        levels = block.end - block.start
        probabilities = tf.maximum(encoded[..., block.start : block.end], 0.0)
        total = tf.maximum(tf.reduce_sum(probabilities, axis=-1, keepdims=True), 1e-12)
        below = tf.cumsum(probabilities, axis=-1) / total < uniforms[..., j : j + 1]
        index = tf.minimum(tf.reduce_sum(tf.cast(below, tf.int32), axis=-1), levels - 1)
        parts.append(tf.one_hot(index, levels, dtype=encoded.dtype))
    return tf.concat(parts, axis=-1)


RUN_FILES = ("generator.keras", "transforms.json", "config.yaml")
FORMATS = (".csv", ".parquet")


class TrainedRun:
    """A run folder's generator, transforms and config, checked on load.

    Args:
        run_dir: a folder written by :func:`hg_keras.training.train`.

    Raises:
        InputError: the folder does not exist or is not a trained run.
    """

    def __init__(self, run_dir):
        import keras

        import hg_keras.models  # noqa: F401  (registers the saved classes with Keras)

        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise InputError(f"{run_dir}: no such model folder; train one with python cli.py train")
        missing = [name for name in RUN_FILES if not (run_dir / name).exists()]
        if missing:
            raise InputError(
                f"{run_dir}: not a trained run (missing {', '.join(missing)}); "
                "pass the folder that python cli.py train wrote"
            )
        self.run_dir = run_dir
        self.config = load_config(run_dir / "config.yaml")
        self.transformer = CohortTransformer.load(run_dir / "transforms.json")
        self.generator = keras.models.load_model(run_dir / "generator.keras")
        info = run_dir / "run.json"
        self.info = json.loads(info.read_text()) if info.exists() else {}

    @property
    def schema(self):
        return self.transformer.schema

    @property
    def months(self):
        """Default synthetic length: the longest training patient (variable
        lengths) or the longest curriculum length trained on."""
        if self.schema.variable_length:
            return max(self.transformer.length_counts)
        return max(self.config.training.curriculum)

    @property
    def conditional(self):
        return self.generator.conditional

    def generate(self, patients, months=None, seed=0, chunk=0, where=None):
        """Generator output for noise, lengths and groups keyed by `(seed, chunk)`.

        Args:
            months: int fixes every patient's length; None draws lengths from
                the training lengths (variable-length runs) or uses :attr:`months`.
            where: dict name -> code of static attributes to generate (conditional runs).

        Returns:
            (array `(patients, steps, features)`, int array `(patients,)` of
            lengths); steps past a patient's length hold :data:`PAD`.
        """
        seed_pair = tf.constant([seed, chunk], tf.int64)
        if months is None and self.schema.variable_length:
            values, probabilities = length_table(self.transformer)
            picks = draw_categories(probabilities, patients, seed_pair + [0, LENGTH_STREAM])
            lengths = values[picks.numpy()]
        else:
            lengths = np.full(patients, self.months if months is None else months)
        # Always the full length (lengths only mask it): the noise, and so the
        # patients, are then those of the SavedModel with seq_len = months.
        steps = self.months if months is None else months
        lengths = np.minimum(lengths, steps)
        noise = latent_noise(
            patients,
            steps,
            self.generator.latent_dim,
            seed_pair,
            self.config.model.latent_distribution,
        )
        valid = np.arange(steps)[None, :] < lengths[:, None]
        if self.generator.masked:
            noise = tf.where(valid[..., None], noise, PAD)
        inputs = noise
        if self.conditional:
            table, probabilities = group_table(self.transformer, where)
            picks = draw_categories(probabilities, patients, seed_pair + [0, GROUP_STREAM])
            inputs = [noise, tf.gather(table, picks)]
        elif where:
            raise InputError(
                f"{self.run_dir}: --where needs a conditional model; train it with "
                "model.conditional: true in the config"
            )
        encoded = self.generator(inputs, training=False)
        if self.config.model.discrete_output == "sample":
            encoded = draw_levels(encoded, self.transformer.layout, seed_pair)
        encoded = np.array(encoded)
        encoded[~valid] = PAD
        return encoded, lengths

    def encoded(self, patients, months, seed, chunk=0, where=None):
        """The generator's output `(patients, months, features)` for `(seed, chunk)`."""
        return self.generate(patients, months, seed, chunk, where)[0]

    def training_fingerprints(self, months):
        """Fingerprints of the training patients' first `months` steps, or None.

        None when the training cohort can no longer be read (moved or deleted).
        """
        from hg_keras.training import load_training_cohort

        try:
            frame = load_training_cohort(self.config, self.info.get("data"))
        except InputError:
            return None
        if months is not None:
            lengths = frame.groupby(self.schema.id, sort=False)[self.schema.id].transform("size")
            frame = frame[(frame.groupby(self.schema.id).cumcount() < months) & (lengths >= months)]
            if frame.empty:
                return set()  # Shorter training patients cannot be copied at this length.
        encoded, lengths = self.transformer.encode(frame, return_lengths=True)
        return set(patient_fingerprints(encoded, self.transformer.layout, lengths=lengths))

    def sample_frame(self, patients, months=None, seed=0, chunk=0, first_id=0, where=None):
        """One chunk of synthetic patients as a long-format frame (clinical units, codes)."""
        encoded, lengths = self.generate(patients, months, seed, chunk, where)
        ids = np.arange(first_id, first_id + patients)
        return self.transformer.decode(encoded, patient_ids=ids, lengths=lengths)


def sample_to_file(
    run,
    n,
    out,
    months=None,
    seed=0,
    chunk_patients=CHUNK_PATIENTS,
    verbose=True,
    max_copies=None,
    where=None,
):
    """Writes `n` synthetic patients to `out` (.csv or .parquet) in chunks.

    The file appears only when complete: chunks go to a temporary file in the
    same folder, renamed into place at the end.

    Args:
        run: :class:`TrainedRun`.
        n: int, number of patients (> 0).
        out: path ending in .csv or .parquet.
        months: int, time steps per patient (default: drawn from the training
            lengths for variable-length runs, else the longest curriculum length).
        seed: int.
        chunk_patients: int, patients generated and written at a time (bounds memory).
        verbose: bool, show a progress bar when there is more than one chunk.
        max_copies: int or None; refuse to write the file when more synthetic
            patients than this exactly copy a training patient.
        where: dict name -> code (:func:`hg_keras.conditions.parse_where`):
            generate only patients with these static attributes (conditional runs).

    Returns:
        (path of the written file, number of exact copies or None when the
        training cohort could not be read to check).

    Raises:
        InputError: bad arguments, or more copies than `max_copies` (nothing
            is written then).
    """
    out = Path(out)
    if n < 1:
        raise InputError(f"--n must be a positive number of patients, got {n}")
    if out.suffix.lower() not in FORMATS:
        raise InputError(
            f"{out}: unsupported output type '{out.suffix}' (expected .csv or .parquet)"
        )
    if out.is_dir():
        raise InputError(f"{out}: is a folder, expected a file name ending in .csv or .parquet")
    if months is not None and months < 1:
        raise InputError(f"--months must be positive, got {months}")
    if where and not run.conditional:
        raise InputError(
            f"{run.run_dir}: --where needs a conditional model; train it with "
            "model.conditional: true in the config"
        )
    if where:
        group_table(run.transformer, where)  # Refuse an unseen group before writing.
    if months is None and not run.schema.variable_length:
        months = run.months
    if max_copies is not None and max_copies < 0:
        raise InputError(f"--max-copies must be 0 or more, got {max_copies}")
    training = run.training_fingerprints(months)
    if training is None and max_copies is not None:
        raise InputError(
            f"cannot check copies: the training cohort {run.info.get('data')} is not readable"
        )
    copies = 0
    starts = range(0, n, chunk_patients)
    progress = None
    if verbose and len(starts) > 1:
        import keras

        progress = keras.utils.Progbar(n, unit_name="patient")

    def write(tmp):
        nonlocal copies
        writer = None
        try:
            for chunk, start in enumerate(starts):
                size = min(chunk_patients, n - start)
                encoded, lengths = run.generate(size, months, seed, chunk, where)
                if training is not None:
                    keys = patient_fingerprints(encoded, run.transformer.layout, lengths=lengths)
                    copies += sum(key in training for key in keys)
                    if max_copies is not None and copies > max_copies:
                        raise InputError(
                            f"{copies} synthetic patients exactly copy a training patient "
                            f"(--max-copies {max_copies}); nothing was written to {out}"
                        )
                ids = np.arange(start, start + size)
                frame = run.transformer.decode(encoded, patient_ids=ids, lengths=lengths)
                writer = _write_chunk(frame, tmp, out.suffix.lower(), writer, first=chunk == 0)
                if progress is not None:
                    progress.update(start + size)
        finally:
            if writer is not None:
                writer.close()

    atomic_write(out, write, suffix=out.suffix)
    return out, (copies if training is not None else None)


def _write_chunk(frame, path, suffix, writer, first):
    if suffix == ".csv":
        frame.to_csv(path, mode="w" if first else "a", header=first, index=False)
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    return writer
