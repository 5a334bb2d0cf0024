"""How the discriminative score of a run grows with the patients its judge learns from.

Usage:
    python benchmarks/judge_size.py RUN_DIR [RUN_DIR ...] [--sizes 512 1024 2048]
        [--seeds 0 1 2] [--out judge_size.json]

The judge (:func:`hg_keras.evaluation.utility.discriminative_score`) learns
from the patients it is given: with more of them it finds subtler cues, so
one generator scores higher against 2,048 held-out patients than against
1,024. Two runs' scores compare only at equal sizes. For each size `n` this
samples `n` synthetic patients from each run and scores them against the
first `n` never-trained patients of its cohort (neither its training nor its
validation patients), over the classifier seeds; the floor at `n` is two
disjoint sets of never-trained patients, `n` each, scored the same way. All
runs must come from one cohort. Prints a table and writes every score as JSON.
"""

import argparse
import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from hg_keras.evaluation.evaluate import discriminative  # noqa: E402
from hg_keras.files import atomic_write  # noqa: E402
from hg_keras.holdout import load_training_cohort  # noqa: E402
from hg_keras.sampling import TrainedRun  # noqa: E402


def unseen_patients(run):
    """The run's cohort and its patient ids in cohort order that the run neither
    trained on nor used to choose its snapshot."""
    config = run.config

    def cohort(**training):
        changed = dataclasses.replace(config.training, **training)
        return load_training_cohort(dataclasses.replace(config, training=changed), run.data)

    frame = cohort(patients=None, holdout=0, validation=0)
    # Validation 0 keeps the validation patients among the training ones: both are seen.
    seen = set(cohort(validation=0)[config.schema.id].unique())
    ids = frame[config.schema.id].unique()
    return frame, np.array([i for i in ids if i not in seen])


def patients(frame, schema, ids):
    return frame[frame[schema.id].isin(ids)].reset_index(drop=True)


def judge_sizes(run_dirs, sizes, seeds):
    """dict: per run and for ``floor``, per size, the score of each classifier seed."""
    runs = [TrainedRun(d) for d in run_dirs]
    schema = runs[0].schema
    out = {"floor": {}}
    unseen = [unseen_patients(run) for run in runs]
    # The floor's two sets come from the patients no run has seen.
    shared = set.intersection(*(set(ids) for _, ids in unseen))
    frame = unseen[0][0]
    floor_ids = np.array([i for i in unseen[0][1] if i in shared])
    for n in sizes:
        if len(floor_ids) >= 2 * n:
            a, b = (patients(frame, schema, floor_ids[k * n : (k + 1) * n]) for k in (0, 1))
            out["floor"][n] = [discriminative(a, b, schema, seed=s) for s in seeds]
    for run, run_dir, (frame, ids) in zip(runs, run_dirs, unseen):
        out[run_dir] = {}
        for n in sizes:
            if len(ids) < n:
                raise SystemExit(f"{run_dir}: only {len(ids)} never-trained patients, not {n}")
            real = patients(frame, schema, ids[:n])
            # A variable-length run draws its lengths only when no length is given.
            months = None if schema.variable_length else run.months
            synthetic = run.sample_frame(n, months, seed=0)
            out[run_dir][n] = [discriminative(real, synthetic, schema, seed=s) for s in seeds]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="judge_size.json")
    args = parser.parse_args(argv)
    scores = judge_sizes(args.run_dirs, args.sizes, args.seeds)
    print(f"{'patients a side':30s}" + "".join(f"{n:>10d}" for n in args.sizes))
    for name, row in scores.items():
        cells = "".join(
            f"{np.mean(row[n]):10.3f}" if n in row else f"{'-':>10s}" for n in args.sizes
        )
        print(f"{name:30s}{cells}")
    rows = {k: {str(n): v for n, v in row.items()} for k, row in scores.items()}
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    print(f"wrote {args.out} (mean over classifier seeds {args.seeds})")


if __name__ == "__main__":
    main()
