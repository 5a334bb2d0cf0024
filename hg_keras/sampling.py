"""Sampling synthetic patients from a trained run, streamed to CSV or Parquet.

Noise is drawn statelessly from ``(seed, chunk index)``: the same seed gives
the same file, and a run's SavedModel (``serving_default`` with the same
`seed`) gives the same patients.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from hg_keras.config import load_config
from hg_keras.data.transforms import CohortTransformer
from hg_keras.errors import InputError
from hg_keras.evaluation.privacy import patient_fingerprints
from hg_keras.files import atomic_write
from hg_keras.noise import latent_noise

# Patients generated at a time: about 0.5 GB of activations on a CPU.
CHUNK_PATIENTS = 2_000
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

    def training_fingerprints(self, months):
        """Fingerprints of the training patients' first `months` steps, or None.

        None when the training cohort can no longer be read (moved or deleted).
        """
        from hg_keras.training import load_training_cohort

        try:
            frame = load_training_cohort(self.config, self.info.get("data"))
        except InputError:
            return None
        frame = frame[frame.groupby(self.schema.id).cumcount() < months]
        if frame.groupby(self.schema.id).size().min() < months:
            return set()  # Shorter training patients cannot be copied at this length.
        encoded = self.transformer.encode(frame)
        return set(patient_fingerprints(encoded, self.transformer.layout))

    def sample_frame(self, patients, months=None, seed=0, chunk=0, first_id=0):
        """One chunk of synthetic patients as a long-format frame (clinical units, codes)."""
        months = self.months if months is None else months
        ids = np.arange(first_id, first_id + patients)
        return self.transformer.decode(self.encoded(patients, months, seed, chunk), patient_ids=ids)


def sample_to_file(
    run, n, out, months=None, seed=0, chunk_patients=CHUNK_PATIENTS, verbose=True, max_copies=None
):
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
        max_copies: int or None; refuse to write the file when more synthetic
            patients than this exactly copy a training patient.

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
    months = run.months if months is None else months
    if months < 1:
        raise InputError(f"--months must be positive, got {months}")
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
                encoded = run.encoded(size, months, seed, chunk)
                if training is not None:
                    keys = patient_fingerprints(encoded, run.transformer.layout)
                    copies += sum(key in training for key in keys)
                    if max_copies is not None and copies > max_copies:
                        raise InputError(
                            f"{copies} synthetic patients exactly copy a training patient "
                            f"(--max-copies {max_copies}); nothing was written to {out}"
                        )
                ids = np.arange(start, start + size)
                frame = run.transformer.decode(encoded, patient_ids=ids)
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
