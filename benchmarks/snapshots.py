"""Every scored snapshot of a run, by the release criterion and by never-trained patients.

A run releases the snapshot its validation patients find hardest to tell
apart (:mod:`hg_keras.selection`). This trains each config on the embedded
cohort and, at the same epochs the run checks, scores the generator twice:
by the run's criterion (its validation patients) and by the held-out
patients (the next 1,024, never trained on). It writes every row to
``<work>/<config>-seed<s>.json`` and prints, per run, the holdout score of
the snapshot the criterion releases, of the last snapshot and of the best
one, and the rank correlation of criterion and holdout over the snapshots.

    python benchmarks/snapshots.py --configs quick runs/x.yaml --seeds 42 0 1 --work runs/snapshots
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np
import scipy.stats

from hg_keras.config import load_config
from hg_keras.data.pipeline import default_curriculum
from hg_keras.holdout import load_training_cohort
from hg_keras.run_folder import RunFolder
from hg_keras.selection import BestSnapshot, check_epochs
from hg_keras.training import planned_epochs, train

CRITERIA = ("validation",)


class SnapshotStudy(keras.callbacks.Callback):
    """Scores the generator at `epochs` by each criterion and by the holdout."""

    def __init__(self, config, out, epochs):
        super().__init__()
        self.config, self.out, self.epochs = config, Path(out), set(epochs)
        self.rows = []

    def on_train_begin(self, logs=None):
        frame, holdout, validation = load_training_cohort(
            self.config, with_holdout=True, with_validation=True
        )
        transformer = RunFolder(self.out).read_transformer()
        steps = int(frame.groupby(self.config.schema.id).size().max())

        def judge(real):
            return BestSnapshot(
                real,
                transformer,
                self.config.model,
                steps,
                self.out / "study",
                seed=self.config.training.seed,
                write=False,
            )

        self.judges = {"validation": judge(validation), "holdout": judge(holdout)}

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 not in self.epochs:
            return
        row = {"epoch": epoch + 1, "updates": int(self.model.generator_optimizer.iterations)}
        row.update({name: j.score(self.model.generator) for name, j in self.judges.items()})
        print(json.dumps(row), flush=True)
        self.rows.append(row)


def released(rows, criterion):
    """The row a criterion releases: its lowest score, ties to the later snapshot."""
    return min(rows, key=lambda r: (r[criterion], -r["epoch"]))


def summary(rows):
    out = {
        "last": rows[-1]["holdout"],
        "best": min(r["holdout"] for r in rows),
    }
    for criterion in CRITERIA:
        out[f"released_by_{criterion}"] = released(rows, criterion)["holdout"]
        rho = scipy.stats.spearmanr([r[criterion] for r in rows], [r["holdout"] for r in rows])
        out[f"spearman_{criterion}"] = float(rho.statistic)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["quick"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 0, 1])
    parser.add_argument("--work", default="runs/snapshots")
    args = parser.parse_args(argv)
    results = {}
    for path in args.configs:
        for seed in args.seeds:
            config = load_config(path).replace_training(seed=seed)
            name = f"{Path(path).stem}-seed{seed}"
            record = Path(args.work) / f"{name}.json"
            if record.exists():  # finished runs are kept: an interrupted study resumes
                rows = json.loads(record.read_text())["rows"]
            else:
                out = Path(args.work) / name
                frame = load_training_cohort(config)
                steps = int(frame.groupby(config.schema.id).size().max())
                training = config.replace_training(curriculum=default_curriculum(steps)).training
                planned = planned_epochs(training, frame[config.schema.id].nunique())
                epochs = check_epochs(planned, config.training.checks)
                study = SnapshotStudy(config, out, epochs)
                train(config, out=out, verbose=0, callbacks=[study])
                rows = study.rows
                record.write_text(json.dumps({"config": path, "seed": seed, "rows": rows}))
            results[name] = summary(rows)
            print(name, json.dumps({k: round(v, 3) for k, v in results[name].items()}))
    keys = list(next(iter(results.values())))
    print("| run | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, values in results.items():
        print(f"| {name} | " + " | ".join(f"{values[k]:.3f}" for k in keys) + " |")
    for key in keys:
        print(key, "median", round(float(np.median([v[key] for v in results.values()])), 3))


if __name__ == "__main__":
    main()
