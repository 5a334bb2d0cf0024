"""What gives a run's synthetic patients away? The discriminative score per variable.

Usage:
    python benchmarks/giveaways.py RUN_DIR [--seed 0] [--with NAME] [--out giveaways.json]

Samples as many patients as the run trained on and scores, against the run's
held-out patients (never trained on), the evaluation's post-hoc GRU classifier
(:func:`hg_keras.evaluation.utility.discriminative_score`) on each encoded
variable alone ("alone": how well that variable by itself separates synthetic
from real) and on every variable but it ("without": what is left when it
is hidden). A variable with a high "alone" score is where the generator is
furthest from the data; the overall score only drops when every such
variable is fixed. With ``--with NAME``, each variable is also scored
together with NAME ("with"): when hiding NAME drops the score but NAME alone
scores low, the cue is a relation between NAME and another variable, and
the pair that scores highest names it. Prints a table and writes it as JSON.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from hg_keras.data.transforms import CohortTransformer  # noqa: E402
from hg_keras.evaluation.evaluate import _aligned  # noqa: E402
from hg_keras.evaluation.utility import discriminative_score  # noqa: E402
from hg_keras.holdout import load_training_cohort  # noqa: E402
from hg_keras.sampling import TrainedRun  # noqa: E402


def giveaways(run_dir, seed=0, partner=None):
    """dict: ``all`` and, per variable, ``{"alone": score, "without": score}``
    (and ``"with"``: the variable and `partner` together, when given)."""
    run = TrainedRun(run_dir)
    real, holdout = load_training_cohort(run.config, run.data, with_holdout=True)
    ids = run.folder.read_holdout_ids()
    if holdout is None or not ids:
        raise SystemExit(f"{run_dir}: the run has no held-out patients to compare with")
    holdout = holdout[holdout[run.schema.id].isin(ids)].reset_index(drop=True)
    synthetic = run.sample_frame(real[run.schema.id].nunique(), seed=seed)
    frames, _ = _aligned({"real": real, "synthetic": synthetic, "holdout": holdout}, run.schema)
    transformer = CohortTransformer(run.schema).fit(frames["real"])
    real_x, fake_x = (
        transformer.encode(frames[k], dtype=np.float64) for k in ("holdout", "synthetic")
    )
    layout = transformer.layout

    def columns(*names):
        inside = np.zeros(real_x.shape[-1], bool)
        for name in names:
            inside[layout.block(name).start : layout.block(name).end] = True
        return inside

    def score(inside):
        return discriminative_score(real_x[..., inside], fake_x[..., inside], seed=seed)

    if partner is not None and partner not in run.schema.names:
        raise SystemExit(f"--with {partner!r}: not a variable of the run's schema")
    out = {"all": score(columns(*run.schema.names))}
    for block in layout.blocks:
        inside = columns(block.name)
        out[block.name] = {"alone": score(inside), "without": score(~inside)}
        if partner is not None and block.name != partner:
            out[block.name]["with"] = score(columns(block.name, partner))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with", dest="partner", help="also score each variable with this one")
    parser.add_argument("--out", default="giveaways.json")
    args = parser.parse_args(argv)
    scores = giveaways(args.run_dir, args.seed, args.partner)
    partner = f"with {args.partner}" if args.partner else ""
    print(f"{'variable':20s} {'alone':>6s} {'without':>8s} {partner}  (all: {scores['all']:.3f})")
    for name, score in scores.items():
        if name != "all":
            paired = f" {score['with']:8.3f}" if "with" in score else ""
            print(f"{name:20s} {score['alone']:6.3f} {score['without']:8.3f}{paired}")
    with open(args.out, "w") as stream:
        json.dump(scores, stream, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
