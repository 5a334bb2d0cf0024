"""Each generator update's own losses, to see how a run leaves a good region.

Usage:
    python benchmarks/batch_losses.py --config configs/long.yaml --seed 42 --updates 2016 \\
        --out runs/batches [--from-epoch 8]

Trains the config as ``train`` does (one snapshot check, at the end) and
writes one JSON line per batch to ``<out>.jsonl``: its epoch, batch and every
logged loss. Keras hands callbacks the epoch's running means; each batch's
own value is recovered from consecutive means. It then prints, from
`--from-epoch` on, each epoch's weighted alignment terms and the adversarial
part (``generator_loss`` minus the weighted terms) averaged over each
curriculum length's batches, so a drift within an epoch shows where it starts.
The same seed repeats an earlier run's epochs exactly, so an excursion seen in
a long run's ``logs/history.csv`` can be replayed batch by batch.
"""

import argparse
import collections
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from hg_keras.config import load_config  # noqa: E402
from hg_keras.files import atomic_write  # noqa: E402
from hg_keras.training import train  # noqa: E402


class BatchLosses(keras.callbacks.Callback):
    """Appends each batch's own losses to a JSON-lines file."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.rows = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.seen, self.means = epoch, 0, {}

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        row = {"epoch": self.epoch, "batch": batch}
        for name, mean in (logs or {}).items():
            mean = float(mean)
            row[name] = self.seen * mean - (self.seen - 1) * self.means.get(name, 0.0)
            self.means[name] = mean
        self.rows.append(row)

    def on_train_end(self, logs=None):
        text = "".join(json.dumps(row) + "\n" for row in self.rows)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))


def blocks(rows, weights, lengths, first_epoch):
    """{epoch: [{part: mean weighted value} per curriculum length]}."""
    by_epoch = collections.defaultdict(list)
    for row in rows:
        if row["epoch"] >= first_epoch:
            by_epoch[row["epoch"]].append(row)
    out = {}
    for epoch, batch_rows in sorted(by_epoch.items()):
        size = len(batch_rows) // lengths
        out[epoch] = []
        for k in range(lengths):
            chunk = batch_rows[k * size : (k + 1) * size]
            parts = collections.defaultdict(float)
            for row in chunk:
                weighted = {n: w * row[f"{n}_loss"] for n, w in weights.items()}
                weighted["adversarial"] = row["generator_loss"] - sum(weighted.values())
                for name, value in weighted.items():
                    parts[name] += value / len(chunk)
            out[epoch].append(dict(parts))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quick")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--updates", type=int, default=2016)
    parser.add_argument("--from-epoch", type=int, default=0)
    parser.add_argument("--out", default="runs/batches")
    args = parser.parse_args(argv)
    config = load_config(args.config).replace_training(
        seed=args.seed, updates=args.updates, minutes=None, checks=1
    )
    logger = BatchLosses(f"{args.out}.jsonl")
    folder = train(config, out=args.out, verbose=0, callbacks=[logger])
    resolved = load_config(f"{folder}/config.yaml")
    weights = {n: w for n, w in resolved.training.alignment.items() if w}
    lengths = len(resolved.training.curriculum)
    for epoch, parts in blocks(logger.rows, weights, lengths, args.from_epoch).items():
        for k, values in enumerate(parts):
            cells = " ".join(f"{n} {v:.1f}" for n, v in values.items())
            print(f"epoch {epoch} length {k + 1}/{lengths}: {cells}")


if __name__ == "__main__":
    main()
