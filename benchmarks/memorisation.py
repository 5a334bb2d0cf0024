"""Does differential privacy stop a run that memorises its patients from leaking them?

Usage:
    python benchmarks/memorisation.py [--seeds 0 1 2] [--epsilon 1] [--updates 300]
        [--work runs/memorisation]

The deliberately overfitted run of ``tests/test_privacy.py``'s memorisation
test, over several training seeds: 12 patients, each 6 static uniform values
and a coin, all trained, batch 12, `--updates` generator updates (the test
trains 200 at seed 4), the default model
at toy width. The same run with and without privacy samples 200 patients; the
membership AUC is the package's distance attack
(``hg_keras.evaluation.privacy.membership_auc``: 0.5 no leakage, 1 full)
against 400 fresh non-members from the same distribution. Prints one line per
run, the AUC's chance spread, and a JSON summary.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
from test_privacy import (  # noqa: E402
    MEMBERS,
    NON_MEMBERS,
    memorisable_config,
    uniform_patients,
)

from hg_keras.evaluation.privacy import membership_auc  # noqa: E402
from hg_keras.sampling import TrainedRun  # noqa: E402
from hg_keras.training import train  # noqa: E402


def memorisation_auc(work, seed=0, epsilon=None, updates=300):
    """Membership AUC of one run (`epsilon` None: without privacy)."""
    work = Path(work)
    rng = np.random.default_rng(10)
    members, others = uniform_patients(rng, MEMBERS), uniform_patients(rng, NON_MEMBERS)
    path = work / "cohort.csv"
    work.mkdir(parents=True, exist_ok=True)
    members.to_csv(path, index=False)
    privacy = None if epsilon is None else {"epsilon": epsilon}
    out = work / f"seed{seed}-{'plain' if epsilon is None else f'epsilon{epsilon:g}'}"
    if not (out / "generator.keras").exists():
        config = memorisable_config(privacy, seed=seed, updates=updates)
        train(config, data=str(path), out=out, verbose=0)
    run = TrainedRun(out)
    encode = run.transformer.encode
    synthetic = encode(run.sample_frame(200, seed=0))
    return membership_auc(synthetic, encode(members), encode(others))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--work", default="runs/memorisation")
    args = parser.parse_args(argv)
    spread = math.sqrt((MEMBERS + NON_MEMBERS + 1) / (12 * MEMBERS * NON_MEMBERS))
    print(f"chance: AUC 0.5, spread {spread:.3f}", flush=True)
    results = []
    for seed in args.seeds:
        for epsilon in (None, args.epsilon):
            auc = memorisation_auc(args.work, seed, epsilon, args.updates)
            results.append({"seed": seed, "epsilon": epsilon, "membership_auc": auc})
            print(f"seed {seed}, epsilon {epsilon or 'inf'}: membership AUC {auc:.3f}", flush=True)
    print(json.dumps({"chance_spread": spread, "runs": results}))


if __name__ == "__main__":
    main()
