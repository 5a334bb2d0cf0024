"""Utility: can the synthetic cohort stand in for the real one in analysis?

Both scores follow TimeGAN (Yoon et al., NeurIPS 2019): a post-hoc
recurrent classifier tells real from synthetic (discriminative score), and a
recurrent next-step predictor is trained on synthetic and tested on real
(TSTR), against the same predictor trained on real (TRTR).
"""

import keras
import numpy as np
from sklearn.model_selection import train_test_split


def _gru_model(steps, features, hidden, outputs, activation, sequences):
    inputs = keras.Input((steps, features))
    x = keras.layers.GRU(hidden, return_sequences=sequences)(inputs)
    return keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(x))


def discriminative_score(real, synthetic, seed=0, epochs=10, test_share=0.2):
    """``|accuracy - 0.5|`` of a GRU classifier on held-out real and synthetic sequences.

    Each set is split separately (`test_share` held out); a one-layer GRU
    with ``max(features // 2, 4)`` units is trained to output 1 for real.
    0 means indistinguishable, 0.5 trivially separable.

    Args:
        real, synthetic: arrays `(patients, time, features)` of the same time length.
    """
    sets = []
    for data, label in ((real, 1.0), (synthetic, 0.0)):
        cut = max(1, int(round(len(data) * test_share)))
        train, test = train_test_split(data, test_size=cut, random_state=seed + int(label))
        sets.append((train, test, label))
    x_train = np.concatenate([s[0] for s in sets]).astype(np.float32)
    y_train = np.concatenate([np.full(len(s[0]), s[2]) for s in sets])
    x_test = np.concatenate([s[1] for s in sets]).astype(np.float32)
    y_test = np.concatenate([np.full(len(s[1]), s[2]) for s in sets])
    keras.utils.set_random_seed(seed)
    model = _gru_model(None, real.shape[2], max(real.shape[2] // 2, 4), 1, "sigmoid", False)
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, shuffle=True, verbose=0)
    accuracy = np.mean((model.predict(x_test, batch_size=512, verbose=0)[:, 0] > 0.5) == y_test)
    return float(abs(accuracy - 0.5))


def predictive_scores(synthetic, real_train, real_test, numeric_columns, seed=0, epochs=10):
    """Next-month prediction of the numerics: train on synthetic vs on real, test on real.

    A GRU reads months 0..T-2 (all features) and predicts the numeric
    columns of months 1..T-1; the error is the mean absolute error on the
    transformed [0, 1] scale over `real_test`.

    Returns:
        dict ``tstr_mae``, ``trtr_mae`` and ``tstr_ratio`` (TSTR / TRTR;
        1 means the synthetic data is as useful as the real for this task).
    """
    numeric_columns = list(numeric_columns)
    test_x = real_test[:, :-1].astype(np.float32)
    test_y = real_test[:, 1:, numeric_columns].astype(np.float32)
    errors = {}
    for name, data in (("tstr_mae", synthetic), ("trtr_mae", real_train)):
        keras.utils.set_random_seed(seed)
        model = _gru_model(
            None, data.shape[2], max(data.shape[2] // 2, 4), len(numeric_columns), "sigmoid", True
        )
        model.compile(keras.optimizers.Adam(1e-2), "mae")
        model.fit(
            data[:, :-1].astype(np.float32),
            data[:, 1:, numeric_columns].astype(np.float32),
            batch_size=128,
            epochs=epochs,
            shuffle=True,
            verbose=0,
        )
        predicted = model.predict(test_x, batch_size=512, verbose=0)
        errors[name] = float(np.mean(np.abs(predicted - test_y)))
    errors["tstr_ratio"] = errors["tstr_mae"] / max(errors["trtr_mae"], 1e-12)
    return errors
