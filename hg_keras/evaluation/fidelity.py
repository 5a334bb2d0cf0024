"""Fidelity: does the synthetic cohort look like the real one?

Every function takes encoded cohorts `(patients, time, features)` (numerics on
the [0, 1] transformed scale, one-hot or probability blocks) together with
their :class:`FeatureLayout`, or decoded frames where codes matter.
References: SDMetrics (KSComplement, TVComplement), Health Gym's realism
analysis (static, trend and cycle correlations; Kuo et al. 2022), and its
mode-collapse check (the joint Gender x Ethnic table).
"""

import itertools
import logging
import warnings

import numpy as np
import scipy.signal
import scipy.stats


def marginals(real, synthetic, layout):
    """Per-variable distances between real and synthetic marginals.

    Numerics (pooled over patients and months, transformed scale):
    Kolmogorov-Smirnov statistic and Wasserstein-1 distance. Discrete
    variables: total variation distance between level frequencies.

    Returns:
        dict variable -> {"ks": ..., "wasserstein": ...} or {"tvd": ...}.
    """
    out = {}
    for block in layout.blocks:
        r = real[..., block.start : block.end].reshape(-1, block.end - block.start)
        s = synthetic[..., block.start : block.end].reshape(-1, block.end - block.start)
        if block.kind == "numeric":
            out[block.name] = {
                "ks": float(scipy.stats.ks_2samp(r[:, 0], s[:, 0]).statistic),
                "wasserstein": float(scipy.stats.wasserstein_distance(r[:, 0], s[:, 0])),
            }
        else:
            out[block.name] = {"tvd": total_variation(level_shares(r), level_shares(s))}
    return out


def level_shares(block):
    """Share of rows whose argmax is each level."""
    counts = np.bincount(np.argmax(block, axis=1), minlength=block.shape[1])
    return counts / max(counts.sum(), 1)


def total_variation(p, q):
    """``0.5 * sum |p - q|`` between two distributions."""
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def pearson_matrix(encoded):
    """Pearson correlation of the encoded columns pooled over patients and months.

    Constant columns get 0 (not NaN) off the diagonal.
    """
    rows = encoded.reshape(-1, encoded.shape[-1]).astype(np.float64)
    rows = rows - rows.mean(axis=0)
    norms = np.linalg.norm(rows, axis=0)
    rows = rows / np.where(norms > 0, norms, 1.0)
    matrix = rows.T @ rows
    np.fill_diagonal(matrix, 1.0)
    return matrix


def kendall_matrix(frame, columns, max_rows=20_000, seed=0):
    """Kendall's tau-b between decoded columns (codes as ordinal values).

    Rows beyond `max_rows` are subsampled (seeded) to bound the cost.
    """
    values = frame[list(columns)].to_numpy(np.float64)
    if len(values) > max_rows:
        values = values[np.random.default_rng(seed).choice(len(values), max_rows, replace=False)]
    size = len(columns)
    matrix = np.eye(size)
    for a, b in itertools.combinations(range(size), 2):
        tau = scipy.stats.kendalltau(values[:, a], values[:, b]).statistic
        matrix[a, b] = matrix[b, a] = 0.0 if np.isnan(tau) else tau
    return matrix


def correlation_mae(real_matrix, synthetic_matrix):
    """Mean absolute difference of the off-diagonal entries."""
    mask = ~np.eye(len(real_matrix), dtype=bool)
    return float(np.abs(real_matrix - synthetic_matrix)[mask].mean())


def dynamic_correlations(numeric):
    """Trend and cycle correlation matrices, Health Gym style.

    Per patient, each numeric series is split into its linear trend and the
    detrended cycle (``scipy.signal.detrend``); Pearson r is computed per
    variable pair per patient, and the patients are averaged with the Fisher
    z-transform weighted by ``n - 3``. Pairs that are constant for a patient
    are skipped for that patient.

    Args:
        numeric: array `(patients, time, variables)`.

    Returns:
        (trend, cycle) matrices `(variables, variables)`.
    """
    cycle = scipy.signal.detrend(numeric, axis=1, type="linear")
    trend = numeric - cycle
    return _fisher_mean(trend), _fisher_mean(cycle)


def _fisher_mean(series):
    size = series.shape[2]
    centred = series - series.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)  # (patients, variables)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("pta,ptb->pab", centred, centred) / (norms[:, :, None] * norms[:, None, :])
    # Every patient has the same length here, so the n - 3 weights are equal.
    matrix = np.eye(size)
    for a, b in itertools.combinations(range(size), 2):
        values = r[:, a, b]
        values = np.clip(values[np.isfinite(values)], -0.999999, 0.999999)
        mean = float(np.tanh(np.mean(np.arctanh(values)))) if len(values) else 0.0
        matrix[a, b] = matrix[b, a] = mean
    return matrix


def joint_static_table(frame, columns, id_column, labels=None):
    """Share of patients in each combination of the static discrete `columns`.

    Args:
        labels: optional dict column -> {code: label} to name the groups.

    Returns:
        dict "Gender=Male, Ethnic=Other" (or "Gender=1, Ethnic=4") -> share of patients.
    """
    labels = labels or {}
    first = frame.groupby(id_column, sort=False)[list(columns)].first()
    shares = first.value_counts(normalize=True)

    def name(column, code):
        return labels.get(column, {}).get(int(code), int(code))

    return {
        ", ".join(f"{c}={name(c, v)}" for c, v in zip(columns, np.atleast_1d(key))): float(share)
        for key, share in shares.items()
    }


def mode_coverage(real_table, synthetic_table, tolerance=0.5):
    """How well the synthetic data reproduces the real joint static groups.

    A real group is covered when its synthetic share is within `tolerance`
    (relative) of its real share. Health Gym v1's failure, collapse onto
    Male-Other, leaves most groups uncovered.

    Returns:
        dict with ``coverage`` (share of real groups covered),
        ``smallest_group`` and its ``smallest_real_share`` and
        ``smallest_synthetic_share``.
    """
    if not real_table:
        return {
            "coverage": float("nan"),
            "smallest_group": None,
            "smallest_real_share": float("nan"),
            "smallest_synthetic_share": float("nan"),
        }
    covered = [abs(synthetic_table.get(k, 0.0) - v) <= tolerance * v for k, v in real_table.items()]
    smallest = min(real_table, key=real_table.get)
    return {
        "coverage": float(np.mean(covered)),
        "smallest_group": smallest,
        "smallest_real_share": real_table[smallest],
        "smallest_synthetic_share": synthetic_table.get(smallest, 0.0),
    }


def autocorrelation(numeric, max_lag):
    """Mean over patients of each variable's lag-1..`max_lag` autocorrelation.

    Per patient and variable, ``sum_t c_t c_{t+k} / sum_t c_t^2`` of the
    series centred on its own mean (the biased estimator of TimeGAN and
    tsgm): ``tfp.stats.auto_correlation``, which divides lag k by ``N - k``
    instead of ``N``, rescaled by ``(N - k) / N``.

    Args:
        numeric: array `(patients, time, variables)`, `time > max_lag`.

    Returns:
        array `(variables, max_lag)`; constant series are skipped.
    """
    import tensorflow as tf
    import tensorflow_probability as tfp

    numeric = np.asarray(numeric, dtype=np.float64)
    steps = numeric.shape[1]
    # TFP casts its FFT's complex result to real, and TensorFlow warns about it each time.
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        acf = tfp.stats.auto_correlation(tf.constant(numeric), axis=1, max_lags=max_lag).numpy()
    finally:
        tf_log.setLevel(level)
    lags = np.arange(1, max_lag + 1)
    acf = acf[:, 1:] * ((steps - lags) / steps)[None, :, None]  # (patients, lags, variables)
    varying = np.ptp(numeric, axis=1) > 0  # (patients, variables)
    with warnings.catch_warnings():  # a variable constant in every patient: NaN, then 0
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmean(np.where(varying[:, None, :], acf, np.nan), axis=0)
    return np.nan_to_num(out.T)


def switch_rates(frame, columns, id_column):
    """Share of month-to-month transitions where each discrete column changes."""
    changed = frame.groupby(id_column, sort=False)[list(columns)].diff().abs() > 0
    same_patient = frame[id_column].eq(frame[id_column].shift())
    return {c: float(changed.loc[same_patient, c].mean()) for c in columns}


def switch_ratios(real_rates, synthetic_rates, floor=1e-3, pseudo=0.0):
    """How far each column's synthetic switch rate is from the real one, as a factor.

    The factor is ``max(s / r, r / s)`` with both rates floored at `floor`
    (so a column that never switches in either cohort is a perfect 1, and
    one that never switches in one of them is a large factor, not infinity).
    `pseudo` is added to both rates after flooring:
    :func:`~hg_keras.evaluation.evaluate` passes 5 switches' worth of the real
    cohort's transitions (about 1e-4 for 1,024 patients x 60 months, 2e-3 for
    200 x 12), so that a few switches more or less in a small cohort do not
    read as a factor of 2.

    Returns:
        dict ``switch_rate_factors`` (column -> factor) and
        ``switch_ratio_worst`` (the largest factor; None without columns).
    """
    factors = {}
    for column, real in real_rates.items():
        r = max(real, floor) + pseudo
        s = max(synthetic_rates[column], floor) + pseudo
        factors[column] = float(max(s / r, r / s))
    return {
        "switch_rate_factors": factors,
        "switch_ratio_worst": max(factors.values()) if factors else None,
    }


def static_violations(frame, columns, id_column):
    """Share of patients whose static attribute takes more than one value, per column."""
    if not columns:
        return {}
    counts = frame.groupby(id_column, sort=False)[list(columns)].nunique(dropna=True)
    return {c: float((counts[c] > 1).mean()) for c in columns}
