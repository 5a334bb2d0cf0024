"""How the WGAN-GP step cost grows with batch, sequence length and hidden size.

Usage: python benchmarks/sweep.py [--out benchmarks/sweep]
Writes <out>.json and <out>.png (median ms per step of 3 runs after a warm-up).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hg_keras.config import ModelConfig, load_config  # noqa: E402
from hg_keras.data import CohortTransformer, load_cohort  # noqa: E402
from hg_keras.training import build_wgan  # noqa: E402


def step_ms(config, transformer, encoded, batch, length, repeats=3):
    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, encoded)
    spec = tf.TensorSpec((None, None, encoded.shape[2]), tf.float32)
    step = tf.function(wgan.train_step, input_signature=[spec])
    data = tf.constant(encoded[:batch, :length])
    float(step(data)["critic_loss"])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        float(step(data)["critic_loss"])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/sweep")
    args = parser.parse_args()
    base = load_config("art4hiv")
    frame = load_cohort(patients=256)
    transformer = CohortTransformer(base.schema).fit(frame)
    encoded = transformer.encode(frame)
    sweeps = {
        "batch (L=30, H=128)": [(b, 30, 128) for b in (64, 128, 256)],
        "length (B=256, H=128)": [(256, length, 128) for length in (10, 30, 60)],
        "hidden (B=256, L=30)": [(256, 30, h) for h in (32, 64, 128)],
    }
    results = {}
    for name, points in sweeps.items():
        results[name] = []
        for batch, length, hidden in points:
            config = base.__class__(base.schema, ModelConfig(hidden_units=hidden), base.training)
            ms = step_ms(config, transformer, encoded, batch, length)
            results[name].append({"batch": batch, "length": length, "hidden": hidden, "ms": ms})
            print(f"{name}: batch {batch} length {length} hidden {hidden}: {ms:.0f} ms", flush=True)
    with open(f"{args.out}.json", "w") as stream:
        json.dump(results, stream, indent=2)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, (name, points) in zip(axes, results.items()):
        key = name.split()[0]
        ax.plot([p[key] for p in points], [p["ms"] for p in points], "o-")
        ax.set_xlabel(name)
        ax.set_ylabel("ms per WGAN-GP step")
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=90)
    print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
