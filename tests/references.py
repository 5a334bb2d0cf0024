"""Independent NumPy references of the equations the layers implement."""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_lstm(x, i2h_kernel, i2h_bias, h2h_kernel, h2h_bias):
    """The seed's MyLSTM, step by step in NumPy (float64)."""
    units = h2h_kernel.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ i2h_kernel + i2h_bias + h @ h2h_kernel + h2h_bias
        f, i, a, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(a)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c
