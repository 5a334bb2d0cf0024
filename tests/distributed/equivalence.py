"""Trains the same tiny WGAN on one device and on 2 mirrored CPU replicas.

Run as a script (it must split the CPU before TensorFlow starts):
``python equivalence.py CONFIG OUT.json``. Writes the per-step logs and the
final weights' largest difference between the two runs.
"""

import json
import sys

from hg_keras.distribute import make_strategy

mirrored = make_strategy("mirrored", cpu_replicas=2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hg_keras.config import load_config  # noqa: E402
from hg_keras.data.pipeline import curriculum_dataset  # noqa: E402
from hg_keras.data.transforms import CohortTransformer  # noqa: E402
from hg_keras.holdout import load_training_cohort  # noqa: E402
from hg_keras.training import build_wgan  # noqa: E402


class StepLogs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append({name: float(value) for name, value in logs.items()})


def run(strategy, config, encoded, transformer):
    training = config.training
    keras.utils.set_random_seed(training.seed)
    with strategy.scope():
        wgan = build_wgan(config, transformer, encoded)
    dataset = curriculum_dataset(encoded, training.curriculum, training.batch_size, training.seed)
    logs = StepLogs()
    wgan.fit(dataset, epochs=1, callbacks=[logs], verbose=0, shuffle=False)
    weights = [np.asarray(w) for w in wgan.generator.get_weights() + wgan.critic.get_weights()]
    return logs.steps, weights


def main(config_path, out):
    config = load_config(config_path)
    frame = load_training_cohort(config)
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = transformer.encode(frame)
    one_steps, one_weights = run(tf.distribute.get_strategy(), config, encoded, transformer)
    two_steps, two_weights = run(mirrored, config, encoded, transformer)
    result = {
        "replicas": mirrored.num_replicas_in_sync,
        "single": one_steps,
        "mirrored": two_steps,
        "max_weight_difference": max(
            float(np.max(np.abs(a - b))) for a, b in zip(one_weights, two_weights)
        ),
        "max_weight": max(float(np.max(np.abs(a))) for a in one_weights),
    }
    with open(out, "w") as stream:
        json.dump(result, stream, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
