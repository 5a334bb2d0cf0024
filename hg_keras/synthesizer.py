"""The Python API: fit a synthesizer on a cohort, sample, evaluate, save, export.

The CLI is a shell over this class; notebooks use it directly::

    from hg_keras import Synthesizer

    synth = Synthesizer("quick").fit(frame)           # or .fit() for the embedded cohort
    synthetic = synth.sample(500, seed=0)             # a DataFrame in the training format
    metrics = synth.evaluate()                        # on the patients fit() held out
    synth.save("my_run")                              # Synthesizer.load("my_run") later
    synth.export("serving/hg_keras")                  # a TF Serving SavedModel
"""

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from hg_keras.conditions import parse_where
from hg_keras.config import Config, load_config
from hg_keras.distribute import is_chief
from hg_keras.errors import InputError
from hg_keras.evaluation import evaluate as evaluate_frames
from hg_keras.evaluation import write_report
from hg_keras.export import export_run
from hg_keras.run_evaluation import evaluate_run
from hg_keras.run_folder import RunFolder
from hg_keras.sampling import CHUNK_PATIENTS, TrainedRun, sample_to_file
from hg_keras.training import train


class Synthesizer:
    """A Health Gym generator with verbs: ``fit``, ``sample``, ``evaluate``, ``save``, ``export``.

    Args:
        config: a :class:`Config`, the name of a shipped config (``quick``,
            ``art4hiv``, ``long`` ...) or the path of a YAML config.
        **training: ``training`` fields to override (``updates=2000``,
            ``minutes=30``, ``patients=256``, ``seed=1``, ``holdout=0.2`` ...).
    """

    def __init__(self, config="quick", **training):
        if not isinstance(config, Config):
            config = load_config(config)
        self.config = config.replace_training(**training)
        self._run = None
        self._scratch = None  # a temporary run folder, removed with the object

    def __repr__(self):
        where = self._run.run_dir if self._run else "not fitted"
        return f"Synthesizer({where})"

    # Training

    def fit(
        self,
        data=None,
        out=None,
        epochs=None,
        resume=False,
        verbose=None,
        callbacks=(),
        strategy=None,
        updates=None,
        minutes=None,
    ):
        """Trains on `data` and returns self.

        Args:
            data: a DataFrame in the config's schema (one row per patient per
                step), the path of a CSV/Parquet cohort, or None for the
                embedded ART-for-HIV cohort. ``training.holdout`` of its
                patients are held out for :meth:`evaluate`.
            out: run folder to write; default a temporary folder (keep it
                with :meth:`save`).
            epochs, updates, minutes: the training budget in place of the
                config's: epochs, generator updates or minutes (with
                `resume`: the new total; `minutes` counts from the resume).
            resume: bool, continue the run in `out` (default: this
                synthesizer's run) from its last completed epoch, with its own
                config; `data` is needed again only for a run fitted on a DataFrame.
            verbose: Keras verbosity (0 silent, 1 progress bar, 2 a line per
                epoch); default a bar on a terminal, else a line per epoch.
            callbacks: extra Keras callbacks.
            strategy: a ``tf.distribute`` strategy (:func:`hg_keras.make_strategy`).
        """
        if resume and out is None:
            out = self._trained().run_dir
            data = data if data is not None else self._run.data
        if out is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="hg_keras-")
            out = Path(self._scratch.name) / "run"
        run_dir = train(
            None if resume else self.config,
            data=data,
            out=out,
            resume=resume,
            epochs=epochs,
            verbose=verbose,
            strategy=strategy,
            callbacks=callbacks,
            updates=updates,
            minutes=minutes,
        )
        if strategy is not None and not is_chief(strategy):
            self.worker_run_dir = run_dir  # the chief writes the run; nothing to load here
            return self
        self._attach(TrainedRun(run_dir), data)
        return self

    # Using a trained run

    def sample(self, n, seed=0, where=None, months=None):
        """`n` synthetic patients as a DataFrame in the training format.

        Args:
            seed: int; the same seed gives the same patients as
                ``python cli.py sample --seed`` and the SavedModel.
            where: static attributes to generate, as a dict (``{"Gender": 2}``)
                or strings (``["Gender=Female"]``); needs a conditional model.
            months: int, steps per patient; default as trained (variable-length
                runs draw each patient's length from the training lengths).
        """
        run = self._trained()
        return run.sample(n, months=months, seed=seed, where=self._where(where))

    def sample_to_file(
        self, n, out, seed=0, where=None, months=None, max_copies=None, chunk_patients=None
    ):
        """Writes `n` patients to `out` (.csv or .parquet), whole or not at all.

        Returns:
            (path, number of exact copies of training patients, or None when
            the training cohort could not be read to check).
        """
        run = self._trained()
        return sample_to_file(
            run,
            n,
            out,
            months=months,
            seed=seed,
            max_copies=max_copies,
            where=self._where(where),
            chunk_patients=chunk_patients or CHUNK_PATIENTS,
        )

    def evaluate(
        self, real=None, synthetic=None, holdout=None, seed=0, repeats=3, out=None, max_epochs=None
    ):
        """Fidelity, utility and privacy metrics (the dict of ``metrics.json``).

        With no arguments: a sample the size of the training cohort against
        the patients ``fit`` held out (written to the run's ``evaluation/``).
        Otherwise `real` (DataFrame, the training patients), `synthetic`
        (default: as many patients sampled with `seed`) and `holdout` (real
        patients never trained on; default half of `real`).

        Args:
            out: folder for ``report.html`` and ``metrics.json`` (given frames
                only; default none written).
            max_epochs: int, the most epochs each post-hoc network trains for
                (default 200; each stops once its validation loss stops improving).
        """
        run = self._trained()
        judge = {"max_epochs": max_epochs} if max_epochs else {}
        if real is None:
            if synthetic is not None or holdout is not None:
                raise InputError("evaluate(): give `real` with `synthetic` or `holdout`")
            return evaluate_run(run.run_dir, seed=seed, data=run.data, repeats=repeats, **judge)[0]
        schema = run.schema
        if synthetic is None:
            synthetic = run.sample(real[schema.id].nunique(), seed=seed)
        metrics, details = evaluate_frames(
            real, synthetic, schema, holdout=holdout, seed=seed, repeats=repeats, **judge
        )
        if out is not None:
            write_report(metrics, details, out, history_csv=run.folder.history_csv)
        return metrics

    # Keeping it

    def save(self, path):
        """Copies the run folder to `path` (a new folder) and uses it from now on."""
        run = self._trained()
        path = Path(path).absolute()
        if path.exists():
            raise InputError(f"{path}: already exists; save() writes a new folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            shutil.copytree(run.run_dir, tmp / "run", symlinks=True)
            (tmp / "run").rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._attach(TrainedRun(path), run.data)
        return path

    @classmethod
    def load(cls, path, data=None):
        """A synthesizer from a run folder (``save`` or ``python cli.py train``).

        Args:
            data: the training DataFrame, for a run fitted on one in memory
                (copy checks and :meth:`evaluate` re-read the training cohort).
        """
        run = TrainedRun(path)
        synth = cls(run.config)
        synth._attach(run, data)
        return synth

    def export(self, out=None, version=None):
        """Writes a TF Serving SavedModel version; returns its path.

        Args:
            out: the model's base folder (``model_base_path``); default the
                run's ``serving/hg_keras``.
        """
        return export_run(self._trained().run_dir, out=out, version=version)

    # Internals

    @property
    def schema(self):
        """The cohort's :class:`Schema`."""
        return self.config.schema

    @property
    def months(self):
        """Steps of a sampled patient by default (the longest, for variable lengths)."""
        return self._trained().months

    @property
    def run_dir(self):
        """The run folder this synthesizer reads (None before ``fit``)."""
        return self._run.run_dir if self._run else None

    @property
    def folder(self):
        """The :class:`RunFolder` (paths of every file of the run)."""
        return RunFolder(self._trained().run_dir)

    def _attach(self, run, data):
        if isinstance(data, pd.DataFrame):
            run.data = data
        self._run = run
        self.config = run.config

    def _trained(self):
        if self._run is None:
            raise InputError("this Synthesizer is not fitted: call fit() or Synthesizer.load()")
        return self._run

    def _where(self, where):
        if where is None or isinstance(where, dict):
            return where
        return parse_where([where] if isinstance(where, str) else where, self._run.schema)
