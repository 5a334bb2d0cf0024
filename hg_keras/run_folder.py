"""The run folder: what a training run writes, where, and how it is read back.

Every path of a run is named here, and only here::

    config.yaml         the exact config used (extends resolved)
    run.json            where the data came from, patients, epochs completed, the
                        sampler's calibrated renewal rates
    transforms.json     the fitted encoding (Box-Cox lambdas, ranges, levels)
    holdout.json        ids of the patients kept out of training
    checkpoint/         weights, both optimizers' state and the epoch (every epoch);
                        privacy.json: a private run's secret noise key;
                        released.json: its noised cohort marginals
    logs/history.csv    per-epoch losses; logs/tensorboard/ for TensorBoard
    generator.keras     the trained generator
    evaluation/         the run's evaluation report (train --evaluate)
    serving/hg_keras/N  TF Serving versions (export)

Training writes through :class:`RunFolder`; sampling, export, evaluation and
the CLI read through it.
"""

import datetime
import json
import os
from pathlib import Path

import keras

import hg_keras.models  # noqa: F401  (registers the saved classes with Keras)
from hg_keras.config import load_config, save_config
from hg_keras.data.transforms import CohortTransformer
from hg_keras.errors import InputError
from hg_keras.files import atomic_write
from hg_keras.holdout import cohort_name
from hg_keras.privacy import ReleasedMarginals, noise_key

MODEL_NAME = "hg_keras"  # TF Serving's model name and folder
TRAINED_FILES = ("generator.keras", "transforms.json", "config.yaml")


class RunFolder:
    """Paths of one run folder, and the readers and writers of its files.

    Args:
        path: the folder (it need not exist yet).
    """

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunFolder({str(self.path)!r})"

    @classmethod
    def new(cls, root="saved_models"):
        """A fresh ``<root>/run-<date>-<time>`` folder (not created)."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return cls(Path(root) / f"run-{stamp}")

    # Paths

    @property
    def config_path(self):
        return self.path / "config.yaml"

    @property
    def info_path(self):
        return self.path / "run.json"

    @property
    def transforms_path(self):
        return self.path / "transforms.json"

    @property
    def holdout_path(self):
        return self.path / "holdout.json"

    @property
    def checkpoint_dir(self):
        return self.path / "checkpoint"

    @property
    def logs_dir(self):
        return self.path / "logs"

    @property
    def history_csv(self):
        return self.logs_dir / "history.csv"

    @property
    def tensorboard_dir(self):
        return self.logs_dir / "tensorboard"

    @property
    def generator_path(self):
        return self.path / "generator.keras"

    @property
    def evaluation_dir(self):
        return self.path / "evaluation"

    @property
    def serving_dir(self):
        """TF Serving's ``model_base_path`` for this run."""
        return self.path / "serving" / MODEL_NAME

    # State

    @property
    def started(self):
        """Whether a run was started here (a checkpoint or ``run.json`` exists)."""
        return self.checkpoint_dir.exists() or self.info_path.exists()

    def check_trained(self):
        """Raises InputError unless the folder holds a trained generator."""
        if not self.path.is_dir():
            raise InputError(
                f"{self.path}: no such model folder; train one with python cli.py train"
            )
        missing = [name for name in TRAINED_FILES if not (self.path / name).exists()]
        if missing:
            raise InputError(
                f"{self.path}: not a trained run (missing {', '.join(missing)}); "
                "pass the folder that python cli.py train wrote"
            )

    # Readers

    def read_config(self):
        return load_config(self.config_path)

    def read_transformer(self):
        return CohortTransformer.load(self.transforms_path)

    def read_generator(self):
        return keras.models.load_model(self.generator_path)

    def read_info(self):
        """``run.json`` as a dict (empty for a folder without one)."""
        return json.loads(self.info_path.read_text()) if self.info_path.exists() else {}

    def read_holdout_ids(self):
        """The held-out patient ids, or None for a run without ``holdout.json``."""
        if not self.holdout_path.exists():
            return None
        return json.loads(self.holdout_path.read_text())["ids"]

    # Writers (each file appears whole or not at all)

    def write_setup(self, config, transformer, holdout_ids):
        """The files a new run starts with: config, transforms and holdout ids."""
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(config, self.config_path)
        transformer.save(self.transforms_path)
        ids = [i.item() if hasattr(i, "item") else i for i in holdout_ids]
        _write_json(self.holdout_path, {"ids": ids, "patients": len(ids)})

    def write_info(self, data, patients, epochs_completed):
        """``run.json``: the cohort's path (None: embedded; :data:`IN_MEMORY`:
        a DataFrame, not kept), patients, epochs done (other keys kept)."""
        info = {
            **self.read_info(),
            "data": None if data is None else cohort_name(data),
            "patients": patients,
            "epochs_completed": epochs_completed,
        }
        _write_json(self.info_path, info)

    def write_privacy(self, record):
        """Adds a private run's guarantee (:mod:`hg_keras.privacy`) to ``run.json``."""
        _write_json(self.info_path, {**self.read_info(), "privacy": record})

    def write_renewal(self, rates):
        """Adds the released generator's calibrated renewal rates
        (:meth:`hg_keras.drawing.PatientDraw.calibrate`) to ``run.json``."""
        _write_json(self.info_path, {**self.read_info(), "renewal_rates": rates})

    def privacy_key(self, create):
        """The secret key of a private run's DP noise (kept in the checkpoint folder,
        never exported); `create` draws and saves a new one."""
        path = self.checkpoint_dir / "privacy.json"
        if create or not path.exists():
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            _write_json(path, {"key": noise_key()})
        return json.loads(path.read_text())["key"]

    def released_marginals(self, release):
        """A private run's released marginals (:mod:`hg_keras.privacy`): read back
        when saved, else made by `release()` and saved, so a resumed run never
        releases (and spends) twice."""
        path = self.checkpoint_dir / "released.json"
        if path.exists():
            return ReleasedMarginals.from_dict(json.loads(path.read_text()))
        released = release()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        _write_json(path, released.to_dict())
        return released

    def write_generator(self, generator):
        """Saves the generator in Keras format, atomically."""
        atomic_write(self.generator_path, generator.save, suffix=".keras")

    def link_latest(self):
        """Points ``<parent>/latest`` at this run (a relative symlink, replaced atomically)."""
        run_dir = self.path.resolve()
        link = run_dir.parent / "latest"
        tmp = run_dir.parent / f".latest.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)


def _write_json(path, data):
    def write(tmp):
        with open(tmp, "w") as stream:
            json.dump(data, stream, indent=2)

    atomic_write(path, write)
