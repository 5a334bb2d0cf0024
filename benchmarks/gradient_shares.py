"""What drives a trained run's generator: each generator-loss term's share of its gradient.

Usage:
    python benchmarks/gradient_shares.py RUN_DIR [RUN_DIR ...] [--batches 4] [--out shares.json]

Rebuilds each run's WGAN from its folder and its last checkpoint (both
networks), draws `--batches` batches of its training patients at full length,
and reports the norm of the generator's gradient of the adversarial term and
of each weighted alignment term (``weight * term``), each as a share of their
sum, with the critic's Wasserstein estimate on the same batches. A term whose
share grows while the discriminative score worsens is what a longer run
follows instead of the data.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hg_keras.callbacks import STATE, completed_epochs, restore_state  # noqa: E402
from hg_keras.data.transforms import PAD  # noqa: E402
from hg_keras.holdout import load_training_cohort  # noqa: E402
from hg_keras.losses import wasserstein_generator_loss  # noqa: E402
from hg_keras.run_folder import RunFolder  # noqa: E402
from hg_keras.training import build_wgan  # noqa: E402


def shares(run_dir, batches=4, seed=0):
    """dict: per term, the median gradient norm and share; the Wasserstein estimate."""
    folder = RunFolder(run_dir)
    config, transformer = folder.read_config(), folder.read_transformer()
    frame = load_training_cohort(config, folder.read_info().get("data"))
    encoded = transformer.encode(frame).astype(np.float32)
    wgan = build_wgan(config, transformer, encoded)
    restore_state(wgan, folder.checkpoint_dir / STATE)
    rng = np.random.default_rng(seed)
    variables = wgan.generator.trainable_variables
    norms, wasserstein = {}, []
    for _ in range(batches):
        real = tf.constant(encoded[rng.choice(len(encoded), config.training.batch_size, False)])
        valid = tf.reduce_any(tf.not_equal(real, PAD), axis=-1) if wgan.generator.masked else None
        with tf.GradientTape(persistent=True) as tape:
            fake = wgan(real, training=True)
            scores = wgan.critic(fake, training=True)
            losses = {"adversarial": wasserstein_generator_loss(scores)}
            for term, weight in wgan.alignment:
                losses[term.name] = weight * term(real, fake, valid)
        for name, loss in losses.items():
            gradient = tape.gradient(loss, variables)
            norm = tf.linalg.global_norm([g for g in gradient if g is not None])
            norms.setdefault(name, []).append(float(norm))
        del tape
        real_scores = wgan.critic(real, training=False)
        wasserstein.append(float(tf.reduce_mean(real_scores) - tf.reduce_mean(scores)))
    medians = {name: float(np.median(values)) for name, values in norms.items()}
    total = sum(medians.values())
    return {
        "run": str(run_dir),
        "updates": int(wgan.generator_optimizer.iterations.numpy()),
        "epochs": completed_epochs(folder.checkpoint_dir),
        "wasserstein": float(np.median(wasserstein)),
        "gradient_norm": medians,
        "share": {name: value / total for name, value in medians.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = [shares(run, args.batches, args.seed) for run in args.runs]
    for result in results:
        print(
            f"{result['run']}: {result['updates']} updates, Wasserstein {result['wasserstein']:.3f}"
        )
        for name, share in result["share"].items():
            print(f"  {name:<12} norm {result['gradient_norm'][name]:9.4f}  share {share:6.1%}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
