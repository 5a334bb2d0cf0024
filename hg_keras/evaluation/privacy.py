"""Privacy: does the synthetic cohort leak the patients it was trained on?

Distances are Euclidean between whole encoded patient sequences (time x
features, numerics on the [0, 1] scale), the unit a disclosure concerns.
References: SDMetrics DCROverfittingProtection, synthcity's privacy
metrics, and the distance-based membership attack of Hayes et al. (2019).
"""

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

COPY_DISTANCE = 1e-6


def _flat(x):
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def nearest_distances(queries, reference):
    """Distance from each query patient to its nearest patient in `reference`."""
    finder = NearestNeighbors(n_neighbors=1).fit(_flat(reference))
    return finder.kneighbors(_flat(queries))[0][:, 0]


def distance_to_closest_record(synthetic, train, holdout):
    """DCR of synthetic patients to the training set, against the holdout's.

    Returns:
        dict ``dcr_ratio`` (median synthetic DCR / median holdout DCR; below
        1 means synthetic patients sit closer to training patients than new
        real patients do), the two medians, and ``exact_copies`` (synthetic
        patients within 1e-6 of a training patient).
    """
    synthetic_dcr = nearest_distances(synthetic, train)
    holdout_dcr = nearest_distances(holdout, train)
    return {
        "dcr_ratio": float(np.median(synthetic_dcr) / max(np.median(holdout_dcr), 1e-12)),
        "dcr_synthetic_median": float(np.median(synthetic_dcr)),
        "dcr_holdout_median": float(np.median(holdout_dcr)),
        "exact_copies": int(np.sum(synthetic_dcr < COPY_DISTANCE)),
    }


def membership_auc(synthetic, train, holdout):
    """AUC of an attacker telling training from holdout patients.

    The attacker scores a real patient by how close it is to the synthetic
    set (closer means "was in training"). 0.5 is no leakage, 1 is full.
    """
    members = nearest_distances(train, synthetic)
    others = nearest_distances(holdout, synthetic)
    labels = np.r_[np.ones(len(members)), np.zeros(len(others))]
    return float(roc_auc_score(labels, -np.r_[members, others]))


def attribute_disclosure(synthetic_x, synthetic_y, real_x, real_y, neighbours=1):
    """Accuracy of inferring a held-back attribute of real patients from synthetic ones.

    A k-nearest-neighbour attacker fitted on synthetic patients (features:
    the other static attributes and the first months) predicts the attribute
    of real training patients. It is compared with always guessing the real
    majority class.

    Returns:
        dict ``attribute_accuracy`` and ``attribute_baseline``.
    """
    attacker = KNeighborsClassifier(n_neighbors=neighbours).fit(_flat(synthetic_x), synthetic_y)
    accuracy = float(np.mean(attacker.predict(_flat(real_x)) == real_y))
    _, counts = np.unique(real_y, return_counts=True)
    return {
        "attribute_accuracy": accuracy,
        "attribute_baseline": float(counts.max() / counts.sum()),
    }
