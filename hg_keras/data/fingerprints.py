"""Patient fingerprints: exact-copy detection in linear time.

A fingerprint is a patient's record reduced to what decoding keeps, so two
patients decode to the same clinical record exactly when their fingerprints
match. Sampling refuses or counts copies of training patients with them.
"""

import numpy as np


def patient_fingerprints(encoded, layout, decimals=6, lengths=None):
    """One hashable key per patient, equal for patients that are exact copies.

    Numerics are rounded to `decimals` on the [0, 1] transformed scale and
    each discrete block is reduced to its argmax, so a synthetic patient
    decodes to the same clinical record as a training patient exactly when
    their keys match. Linear in the number of patients, unlike distances.

    Args:
        encoded: array `(patients, time, features)`.
        lengths: optional int array `(patients,)`: only a patient's first
            `length` steps count (variable-length patients).

    Returns:
        list of bytes, one per patient.
    """
    parts = [np.round(encoded[..., : layout.numeric_width], decimals)]
    parts += [
        np.argmax(encoded[..., b.start : b.end], axis=-1)[..., None].astype(np.float64)
        for b in layout.discrete_blocks
    ]
    keys = np.ascontiguousarray(np.concatenate(parts, axis=-1) + 0.0)  # + 0.0 folds -0.0 into 0.0
    if lengths is None:
        return [row.tobytes() for row in keys.reshape(len(keys), -1)]
    return [row[:length].tobytes() for row, length in zip(keys, lengths)]
