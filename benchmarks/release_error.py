"""How far a private run's released marginals sit from the cohort's own, by epsilon.

Usage:
    python benchmarks/release_error.py [--cohorts embedded arthritis] [--epsilons 10 3 1]
        [--switch-weights 1 0.5 0.25] [--draws 300] [--work runs/release-error]

No training: the release's Gaussian mechanism is drawn `--draws` times on the
training patients of each cohort (the first 80 %, encoded as a private run
encodes them) at the noise a run at each epsilon spends on it
(``release_share`` of epsilon). Per draw: the mean over numerics of the KS
distance between the released and the true 32-bin histograms, the mean total
variation of the discrete level shares, and the worst factor between a
released renewal rate and the data's (each floored at 0.001).

``--switch-weights`` scales the transition parts against the histogram parts
inside the same norm-1 vector (1 is what the package releases): lower weights
spend more of the sensitivity on the histograms and less on the rates.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
from real_cohorts import SCHEMAS, write, write_embedded

from hg_keras.config import load_config
from hg_keras.data.cohort import load_cohort
from hg_keras.data.transforms import CohortTransformer, rate_from_shares
from hg_keras.privacy import (
    RELEASE_BINS,
    Privacy,
    calibrate_release,
    default_delta,
    patient_marginals,
)


def training_patients(name, work):
    """The encoded first 80 % of a cohort's patients and their layout."""
    if name == "embedded":
        path, schema = write_embedded(work), SCHEMAS / "art4hiv-private.yaml"
    else:
        path, schema = write(name, work)
        schema = schema.with_name(f"{name}-private.yaml")
    config = load_config(schema)
    frame = load_cohort(path, config.schema)
    ids = frame[config.schema.id].unique()
    frame = frame[frame[config.schema.id].isin(ids[: int(0.8 * len(ids))])]
    transformer = CohortTransformer(config.schema).fit(frame)
    return transformer.encode(frame), transformer.layout


class Release:
    """The summed per-patient parts, released again and again with fresh noise."""

    def __init__(self, encoded, layout):
        self.numeric_width = layout.numeric_width
        self.blocks = [(b.start, b.end) for b in layout.discrete_blocks]
        self.dynamic = [(b.start, b.end) for b in layout.dynamic_blocks]
        parts = self.numeric_width + len(self.blocks) + len(self.dynamic)
        # Undo the package's 1/sqrt(parts) to reweigh the parts here.
        marginals = patient_marginals(
            encoded, self.numeric_width, self.blocks, self.dynamic
        ) * math.sqrt(parts)
        self.summed = marginals.sum(axis=0)
        self.sizes = [RELEASE_BINS] * self.numeric_width
        self.sizes += [e - s for s, e in self.blocks] + [2] * len(self.dynamic)
        self.patients = len(encoded)
        self.truth = self.draw(0.0, 1.0, None)

    def draw(self, noise, switch_weight, rng):
        """Histograms, level shares and transition shares after one release."""
        weights = np.ones_like(self.summed)
        weights[-2 * len(self.dynamic) :] = switch_weight
        norm = math.sqrt(
            self.numeric_width + len(self.blocks) + switch_weight**2 * len(self.dynamic)
        )
        scale = weights / norm
        noised = self.summed * scale
        if rng is not None:
            noised = noised + rng.normal(0.0, noise, noised.shape)
        noised = np.maximum(noised / scale, 0.0)
        parts = []
        for part in np.split(noised, np.cumsum(self.sizes)[:-1]):
            total = part.sum()
            parts.append(part / total if total > 0 else np.full(part.shape, 1.0 / part.size))
        return parts

    def rates(self, parts):
        levels = dict(zip(self.blocks, parts[self.numeric_width :]))
        switches = parts[self.numeric_width + len(self.blocks) :]
        return np.array([rate_from_shares(s[1], levels[b]) for b, s in zip(self.dynamic, switches)])

    def errors(self, parts):
        n = self.numeric_width
        truth = self.truth
        ks = [np.abs(np.cumsum(a) - np.cumsum(b)).max() for a, b in zip(parts[:n], truth[:n])]
        levels = slice(n, n + len(self.blocks))
        tvd = [0.5 * np.abs(a - b).sum() for a, b in zip(parts[levels], truth[levels])]
        released, true = np.maximum(self.rates(parts), 1e-3), np.maximum(self.rates(truth), 1e-3)
        factor = np.maximum(released / true, true / released).max() if len(true) else 1.0
        return float(np.mean(ks)), float(np.mean(tvd)), float(factor)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", nargs="+", default=["embedded", "arthritis"])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[10, 3, 1])
    parser.add_argument("--switch-weights", nargs="+", type=float, default=[1.0, 0.5, 0.25])
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/release-error")
    parser.add_argument("--out", default=None, help="JSON file of the figures")
    args = parser.parse_args(argv)
    share = Privacy.release_share
    rows = []
    for name in args.cohorts:
        release = Release(*training_patients(name, Path(args.work)))
        print(f"{name}: {release.patients} training patients, rates {release.rates(release.truth)}")
        for epsilon in args.epsilons:
            noise = calibrate_release(share * epsilon, default_delta(release.patients))
            for weight in args.switch_weights:
                rng = np.random.default_rng(args.seed)
                errors = np.array(
                    [release.errors(release.draw(noise, weight, rng)) for _ in range(args.draws)]
                )
                row = {
                    "cohort": name,
                    "epsilon": epsilon,
                    "noise": noise,
                    "switch_weight": weight,
                    "ks_mean": float(errors[:, 0].mean()),
                    "tvd_mean": float(errors[:, 1].mean()),
                    "rate_factor_median": float(np.median(errors[:, 2])),
                    "rate_factor_p90": float(np.percentile(errors[:, 2], 90)),
                }
                rows.append(row)
                print(
                    f"  epsilon {epsilon:g} (noise {noise:.2f}), switch weight {weight:g}: "
                    f"KS {row['ks_mean']:.4f}, TVD {row['tvd_mean']:.4f}, "
                    f"rate factor median {row['rate_factor_median']:.2f} "
                    f"(90th percentile {row['rate_factor_p90']:.2f})"
                )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
