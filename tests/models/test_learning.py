"""Does training move the generator toward the data? A cohort whose answer is known."""

import numpy as np
import pandas as pd

from hg_keras.config import Config
from hg_keras.evaluation.fidelity import autocorrelation
from hg_keras.sampling import TrainedRun
from hg_keras.training import train

PHI, MONTHS, PATIENTS = 0.9, 12, 96


def ar1_cohort(seed=0):
    """One numeric per patient and month: x_t = 0.9 x_{t-1} + noise, started stationary."""
    rng = np.random.default_rng(seed)
    x = np.empty((PATIENTS, MONTHS))
    x[:, 0] = rng.normal(size=PATIENTS) / np.sqrt(1 - PHI**2)
    for t in range(1, MONTHS):
        x[:, t] = PHI * x[:, t - 1] + rng.normal(size=PATIENTS)
    return pd.DataFrame(
        {
            "x": x.ravel(),
            "id": np.repeat(np.arange(PATIENTS), MONTHS),
            "t": np.tile(np.arange(MONTHS), PATIENTS),
        }
    )


def lag1(run, frame=None):
    if frame is None:
        frame = run.sample_frame(400, months=MONTHS, seed=1)
    series = frame["x"].to_numpy().reshape(-1, MONTHS, 1)
    return float(autocorrelation(series, 1)[0, 0])


def test_short_training_raises_lag1_autocorrelation_toward_the_real_one(tmp_path):
    cohort = ar1_cohort()
    path = tmp_path / "ar1.csv"
    cohort.to_csv(path, index=False)
    config = Config.from_dict(
        {
            "schema": {
                "id": "id",
                "time": "t",
                "variables": [{"name": "x", "kind": "numeric", "transform": "minmax"}],
            },
            # Per-month noise only (v1's input), so an untrained generator is
            # close to white noise and persistence has to be learnt.
            "model": {
                "latent_dim": 4,
                "hidden_units": 8,
                "patient_latent_dim": 0,
                "slow_noise_dim": 0,
            },
            "training": {
                "batch_size": 32,
                "epochs": 1,
                "curriculum": [MONTHS],
                "critic_steps": 1,
                "alignment": {"correlation": 10.0, "marginal": 10.0, "temporal": 10.0},
                "holdout": 0,
                "seed": 0,
            },
        }
    )
    real = lag1(None, cohort)
    first = lag1(TrainedRun(train(config, data=path, out=tmp_path / "a", verbose=0)))
    trained = lag1(
        TrainedRun(
            train(config.replace_training(epochs=25), data=path, out=tmp_path / "b", verbose=0)
        )
    )
    assert real > 0.4  # 0.9 in the process, biased down over 12 months
    assert abs(trained - real) < 0.5 * abs(first - real), (first, trained, real)
