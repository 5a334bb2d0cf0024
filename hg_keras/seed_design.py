"""The seed's training step, transcribed to plain TensorFlow: the benchmark's baseline.

Health Gym v1 (the seed's PyTorch code) runs eagerly: ``MyLSTM`` is a Python
loop of two matmuls per step (``i2h(x_t)``, ``h2h(h)``), the critic is called
separately on the real batch, the fake batch and the interpolates, and the
gradient penalty differentiates the third call twice. This module does the
same with TensorFlow ops executed eagerly (as PyTorch executes), the same
sizes, the same losses and Adam, so that ``python cli.py bench`` can time
our step against the seed's design in alternation on one machine. It is not
used for training, and its numbers are not checked against ours: only its
cost matters (its equations are those of :class:`hg_keras.layers.GateLSTM`).
"""

import keras
import tensorflow as tf

from hg_keras.losses import correlation_loss


class SeedDesignStep:
    """One WGAN-GP step of the seed's design: `critic_steps` critic updates, one generator update.

    Args:
        layout: :class:`FeatureLayout` of the encoded data.
        latent_dim, hidden_units: v1's 128 and 128.
        critic_steps: v1's 5.
        correlation_target: array `(features, features)`.
        seed: int, weight initialisation.
    """

    def __init__(self, layout, latent_dim, hidden_units, critic_steps, correlation_target, seed=0):
        self.layout = layout
        self.critic_steps = critic_steps
        self.target = tf.constant(correlation_target, tf.float32)
        self.rng = tf.random.Generator.from_seed(seed)
        h, z, f = hidden_units, latent_dim, layout.width
        embedded = layout.numeric_width + sum(b.embedding_size for b in layout.discrete_blocks)
        self.generator = {
            "forward": self._lstm(z, h),
            "reverse": self._lstm(z, h),
            "linear1": self._linear(2 * h, h),
            "linear2": self._linear(h, h),
            "linear3": self._linear(h, f),
        }
        self.critic = {
            "embeddings": [
                self._variable((b.end - b.start, b.embedding_size), 1.0)
                for b in layout.discrete_blocks
            ],
            "linear1": self._linear(embedded, h),
            "linear2": self._linear(h, h),
            "forward": self._lstm(h, h),
            "reverse": self._lstm(h, h),
            "linear3": self._linear(2 * h, 1),
        }
        self.generator_variables = _flatten(self.generator)
        self.critic_variables = _flatten(self.critic)
        self.generator_adam = keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.99)
        self.critic_adam = keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.99)

    # Parameters, initialised as PyTorch's nn.Linear (U(+-1/sqrt(fan_in))).

    def _variable(self, shape, limit):
        return tf.Variable(self.rng.uniform(shape, -limit, limit))

    def _linear(self, fan_in, fan_out):
        limit = 1.0 / fan_in**0.5
        return (self._variable((fan_in, fan_out), limit), self._variable((fan_out,), limit))

    def _lstm(self, fan_in, units):
        return {"i2h": self._linear(fan_in, 4 * units), "h2h": self._linear(units, 4 * units)}

    # The networks, as the seed writes them.

    @staticmethod
    def _apply(linear, x):
        kernel, bias = linear
        return tf.matmul(x, kernel) + bias

    def _run_lstm(self, lstm, x):
        """MyLSTM: a Python loop over the steps; returns (sequence, last h)."""
        batch, units = tf.shape(x)[0], lstm["h2h"][0].shape[0]
        h = c = tf.zeros((batch, units))
        outputs = []
        for t in range(x.shape[1]):
            z = self._apply(lstm["i2h"], x[:, t]) + self._apply(lstm["h2h"], h)
            f, i, a, o = tf.split(z, 4, axis=-1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(a)
            h = tf.sigmoid(o) * tf.tanh(c)
            outputs.append(h)
        return tf.stack(outputs, axis=1), h

    def generate(self, z):
        g = self.generator
        forward, _ = self._run_lstm(g["forward"], z)
        reverse, _ = self._run_lstm(g["reverse"], tf.reverse(z, axis=[1]))  # not flipped back
        x = tf.concat([forward, reverse], axis=-1)
        x = tf.nn.leaky_relu(self._apply(g["linear1"], x), 0.1)
        x = tf.nn.leaky_relu(self._apply(g["linear2"], x), 0.1)
        x = self._apply(g["linear3"], x)
        parts = [tf.sigmoid(x[..., : self.layout.numeric_width])]
        parts += [tf.nn.softmax(x[..., b.start : b.end]) for b in self.layout.discrete_blocks]
        return tf.concat(parts, axis=-1)

    def score(self, x):
        d = self.critic
        parts = [x[..., : self.layout.numeric_width]]
        parts += [
            tf.matmul(x[..., b.start : b.end], table)
            for b, table in zip(self.layout.discrete_blocks, d["embeddings"])
        ]
        x = tf.concat(parts, axis=-1)
        x = tf.nn.leaky_relu(self._apply(d["linear1"], x), 0.1)
        x = tf.nn.leaky_relu(self._apply(d["linear2"], x), 0.1)
        _, forward = self._run_lstm(d["forward"], x)
        _, reverse = self._run_lstm(d["reverse"], tf.reverse(x, axis=[1]))
        return self._apply(d["linear3"], tf.concat([forward, reverse], axis=-1))

    # The step.

    def __call__(self, real):
        """One training step on `real` `(batch, time, features)`; returns the critic loss."""
        real = tf.convert_to_tensor(real, tf.float32)
        batch, steps = real.shape[0], real.shape[1]
        latent = self.generator["forward"]["i2h"][0].shape[0]
        for _ in range(self.critic_steps):
            with tf.GradientTape() as tape:
                fake = self.generate(self.rng.uniform((batch, steps, latent)))
                real_scores = self.score(real)
                fake_scores = self.score(fake)
                alpha = self.rng.uniform((batch, 1, 1))
                mixed = alpha * real + (1 - alpha) * fake
                with tf.GradientTape() as inner:
                    inner.watch(mixed)
                    mixed_scores = self.score(mixed)
                gradients = tf.reshape(inner.gradient(mixed_scores, mixed), (batch, -1))
                norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=1) + 1e-12)
                penalty = 10.0 * tf.reduce_mean(tf.square(norms - 1.0))
                critic_loss = tf.reduce_mean(fake_scores) - tf.reduce_mean(real_scores) + penalty
            # The seed does not detach the fake: its backward also fills the
            # generator's gradients, which it then discards (G_opt.zero_grad()).
            grads = tape.gradient(critic_loss, self.critic_variables + self.generator_variables)
            self.critic_adam.apply(grads[: len(self.critic_variables)], self.critic_variables)
        with tf.GradientTape() as tape:
            fake = self.generate(self.rng.uniform((batch, steps, latent)))
            generator_loss = -tf.reduce_mean(self.score(fake)) + 10.0 * correlation_loss(
                fake, self.target
            )
        grads = tape.gradient(generator_loss, self.generator_variables)
        self.generator_adam.apply(grads, self.generator_variables)
        return critic_loss


def _flatten(tree):
    if isinstance(tree, tf.Variable):
        return [tree]
    values = tree.values() if isinstance(tree, dict) else tree
    return [v for item in values for v in _flatten(item)]
