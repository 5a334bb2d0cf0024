"""Sampling synthetic patients from a trained run, streamed to CSV or Parquet.

Noise is drawn statelessly from ``(seed, chunk index)``: the same seed gives
the same file, and a run's SavedModel (``serving_default`` with the same
`seed`) gives the same patients as a one-chunk ``sample``.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from hg_keras.config import load_config
from hg_keras.data.transforms import CohortTransformer
from hg_keras.errors import InputError
from hg_keras.files import atomic_write

CHUNK_PATIENTS = 10_000
RUN_FILES = ("generator.keras", "transforms.json", "config.yaml")
FORMATS = (".csv", ".parquet")


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


class TrainedRun:
    """A run folder's generator, transforms and config, checked on load.

    Args:
        run_dir: a folder written by :func:`hg_keras.training.train`.

    Raises:
        InputError: the folder does not exist or is not a trained run.
    """

    def __init__(self, run_dir):
        import keras

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
        """Default synthetic length: the longest curriculum length trained on."""
        return max(self.config.training.curriculum)

    def encoded(self, patients, months, seed, chunk=0):
        """The generator's output `(patients, months, features)` for noise `(seed, chunk)`."""
        noise = latent_noise(
            patients,
            months,
            self.generator.latent_dim,
            tf.constant([seed, chunk], tf.int64),
            self.config.model.latent_distribution,
        )
        return np.asarray(self.generator(noise, training=False))

    def sample_frame(self, patients, months=None, seed=0, chunk=0, first_id=0):
        """One chunk of synthetic patients as a long-format frame (clinical units, codes)."""
        months = self.months if months is None else months
        ids = np.arange(first_id, first_id + patients)
        return self.transformer.decode(self.encoded(patients, months, seed, chunk), patient_ids=ids)


def sample_to_file(run, n, out, months=None, seed=0, chunk_patients=CHUNK_PATIENTS, verbose=True):
    """Writes `n` synthetic patients to `out` (.csv or .parquet) in chunks.

    The file appears only when complete: chunks go to a temporary file in the
    same folder, renamed into place at the end.

    Args:
        run: :class:`TrainedRun`.
        n: int, number of patients (> 0).
        out: path ending in .csv or .parquet.
        months: int, time steps per patient (default: the run's longest curriculum length).
        seed: int.
        chunk_patients: int, patients generated and written at a time (bounds memory).
        verbose: bool, show a progress bar when there is more than one chunk.

    Returns:
        Path of the written file.
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
    months = run.months if months is None else months
    if months < 1:
        raise InputError(f"--months must be positive, got {months}")
    starts = range(0, n, chunk_patients)
    progress = None
    if verbose and len(starts) > 1:
        import keras

        progress = keras.utils.Progbar(n, unit_name="patient")

    def write(tmp):
        writer = None
        try:
            for chunk, start in enumerate(starts):
                size = min(chunk_patients, n - start)
                frame = run.sample_frame(size, months, seed=seed, chunk=chunk, first_id=start)
                writer = _write_chunk(frame, tmp, out.suffix.lower(), writer, first=chunk == 0)
                if progress is not None:
                    progress.update(start + size)
        finally:
            if writer is not None:
                writer.close()

    atomic_write(out, write, suffix=out.suffix)
    return out


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
