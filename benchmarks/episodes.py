"""Viral-load episodes of synthetic cohorts against held-out embedded patients.

Usage:
    python benchmarks/episodes.py SYNTHETIC.csv [SYNTHETIC.csv ...] [--threshold 1000]
        [--cap 59.9]

An episode is a run of consecutive months with VL above `--threshold`
copies/mL. Per cohort: the share of patients with an episode, the share of
months above the threshold, episodes per patient who has one, the median
episode length and the share of months with Rel CD4 on its cap. The
reference is the embedded cohort's patients 1,024 to 2,047, the ones README
command 1 holds out (never trained on).
"""

import argparse

import numpy as np
import pandas as pd

from hg_keras.data.cohort import load_cohort


def episode_lengths(high):
    """Lengths of the runs of True in one patient's months, in order."""
    edges = np.diff(np.concatenate([[0], high.astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def episode_stats(frame, threshold=1000.0, cap=59.9):
    high = frame["VL"].to_numpy() > threshold
    per_patient = [
        episode_lengths(high[rows]) for rows in frame.groupby("PatientID").indices.values()
    ]
    lengths = np.concatenate(per_patient)
    with_one = sum(len(p) > 0 for p in per_patient)
    return {
        "patients with an episode": with_one / len(per_patient),
        "months above threshold": float(high.mean()),
        "episodes per patient with one": len(lengths) / with_one if with_one else 0.0,
        "median episode length": float(np.median(lengths)) if len(lengths) else 0.0,
        "Rel CD4 months on its cap": float((frame["Rel CD4"] >= cap).mean()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("synthetic", nargs="+")
    parser.add_argument("--threshold", type=float, default=1000.0)
    parser.add_argument("--cap", type=float, default=59.9)
    args = parser.parse_args(argv)
    held_out = load_cohort(patients=2048)
    cohorts = {"held out": held_out[held_out.PatientID >= 1024]}
    cohorts.update({path: pd.read_csv(path) for path in args.synthetic})
    for name, frame in cohorts.items():
        stats = episode_stats(frame, args.threshold, args.cap)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
