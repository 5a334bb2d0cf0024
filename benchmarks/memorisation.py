"""Does differential privacy stop a run that memorises its patients from leaking them?

Usage:
    python benchmarks/memorisation.py [--seeds 0 1] [--updates 600] [--epsilon 1]
        [--work runs/memorisation]

A deliberately overfitted small run: 10 training and 10 held-out patients of
``tests/test_privacy.py``'s private cohort, 4 steps, batch 10, `--updates`
generator updates, the default model at toy width. The same run
with and without privacy samples 200 patients; the membership AUC is the
package's distance attack (``hg_keras.evaluation.privacy.membership_auc``:
0.5 no leakage, 1 full). Prints one line per run and a JSON summary.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import yaml  # noqa: E402
from test_privacy import PRIVATE_CONFIG, private_cohort  # noqa: E402

from hg_keras.config import Config  # noqa: E402
from hg_keras.evaluation.privacy import membership_auc  # noqa: E402
from hg_keras.holdout import load_training_cohort  # noqa: E402
from hg_keras.sampling import TrainedRun  # noqa: E402
from hg_keras.training import train  # noqa: E402


def memorisation_auc(work, seed=0, updates=600, epsilon=None):
    """Membership AUC of one run (`epsilon` None: without privacy)."""
    work = Path(work)
    path = work / f"cohort-{seed}.csv"
    work.mkdir(parents=True, exist_ok=True)
    private_cohort(path, patients=20, steps=4, seed=seed + 1)
    data = yaml.safe_load(PRIVATE_CONFIG)
    data["model"]["hidden_units"] = 16
    data["training"].update(
        batch_size=10,
        holdout=10,
        updates=updates,
        critic_steps=1,
        seed=seed,
        privacy=None if epsilon is None else {"epsilon": epsilon},
    )
    out = work / f"seed{seed}-{'plain' if epsilon is None else f'epsilon{epsilon:g}'}"
    if not (out / "generator.keras").exists():
        train(Config.from_dict(data), data=str(path), out=out, verbose=0)
    run = TrainedRun(out)
    members, others = load_training_cohort(run.config, str(path), with_holdout=True)
    encode = run.transformer.encode
    synthetic = encode(run.sample_frame(200, seed=0))
    return membership_auc(synthetic, encode(members), encode(others))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--work", default="runs/memorisation")
    args = parser.parse_args(argv)
    results = []
    for seed in args.seeds:
        for epsilon in (None, args.epsilon):
            auc = memorisation_auc(args.work, seed, args.updates, epsilon)
            results.append({"seed": seed, "epsilon": epsilon, "membership_auc": auc})
            print(f"seed {seed}, epsilon {epsilon or 'inf'}: membership AUC {auc:.3f}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
