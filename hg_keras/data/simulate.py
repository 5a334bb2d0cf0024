"""A simulated stand-in for the Health Gym ART-for-HIV cohort.

The public file (figshare 10.6084/m9.figshare.22827878) cannot ship with the
package and nothing is downloaded at run time, so the default cohort is
simulated in the exact 15-column schema and codes of ``configs/art4hiv.yaml``.
It is a stand-in with structure worth learning, not clinical truth.

The process, per patient and month (vectorised over patients):

* **Demographics** are drawn once: Gender (about 14% female) and Ethnic
  (Other > Caucasian > African > Asian, with women more often African), close
  to the public file's marginals.
* **Regimen**: one of 16 plausible combinations of Base Drug Combo, Comp. INI,
  Comp. NNRTI, Extra PI and Extra pk-En (e.g. FTC+TDF with DTG; EVG always
  boosted, so pk-En True). It persists; each month it switches with a small
  base probability, and with a high one after two months of virological
  failure. A switch restarts the regimen's effect.
* **Viral load** (log10 copies/mL) falls towards a suppressed level (about
  1.3) under an effective regimen, rebounds towards the patient's set point
  (about 4.5) when the regimen fails (never effective for a non-adherent
  patient, or later by resistance), with measurement noise. Range 0.2 to 9e4.
* **CD4** recovers by a few cells per month while VL is suppressed and falls
  while it is high; **Rel CD4** (CD4 %) follows CD4 through a patient-level
  lymphocyte count.
* **Missing-measurement months**: VL (M) and CD4 (M) flag about 4% of months
  (mostly together, a missed visit), Drug (M) about 2%; a flagged value is
  carried forward from the last observed month.
"""

import numpy as np
import pandas as pd

# (Base Drug Combo, Comp. INI, Comp. NNRTI, Extra PI, Extra pk-En, weight).
# INI 3 / NNRTI 3 / PI 5 mean "Not Applied".
REGIMENS = np.array(
    [
        (0, 0, 3, 5, 0, 0.20),  # FTC+TDF + DTG
        (0, 3, 2, 5, 0, 0.15),  # FTC+TDF + RPV
        (0, 3, 1, 5, 0, 0.08),  # FTC+TDF + EFV
        (0, 2, 3, 5, 1, 0.04),  # FTC+TDF + EVG/cobi
        (0, 3, 3, 4, 1, 0.02),  # FTC+TDF + ATV/cobi
        (1, 0, 3, 5, 0, 0.12),  # 3TC+ABC + DTG
        (1, 3, 2, 5, 0, 0.07),  # 3TC+ABC + RPV
        (1, 3, 1, 5, 0, 0.05),  # 3TC+ABC + EFV
        (1, 1, 3, 5, 0, 0.04),  # 3TC+ABC + RAL
        (2, 2, 3, 5, 1, 0.025),  # FTC+TAF + EVG/cobi
        (3, 3, 3, 1, 0, 0.10),  # DRV+FTC+TDF + RTVB
        (3, 3, 3, 1, 1, 0.035),  # DRV+FTC+TDF + RTVB, boosted
        (4, 3, 3, 0, 0, 0.025),  # FTC+RTVB+TDF + DRV
        (4, 3, 3, 4, 0, 0.02),  # FTC+RTVB+TDF + ATV
        (5, 3, 0, 5, 0, 0.008),  # Other + NVP
        (5, 3, 3, 3, 0, 0.007),  # Other + RTV
    ]
)
REGIMEN_COLUMNS = ("Base Drug Combo", "Comp. INI", "Comp. NNRTI", "Extra PI", "Extra pk-En")
COLUMNS = (
    "VL",
    "CD4",
    "Rel CD4",
    "Gender",
    "Ethnic",
    *REGIMEN_COLUMNS,
    "VL (M)",
    "CD4 (M)",
    "Drug (M)",
    "PatientID",
    "Timestep",
)
# P(Ethnic = Asian, African, Caucasian, Other | Gender).
ETHNIC_GIVEN_MALE = (0.025, 0.07, 0.24, 0.665)
ETHNIC_GIVEN_FEMALE = (0.01, 0.36, 0.06, 0.57)
FEMALE_SHARE = 0.14
# Patients are simulated in chunks with their own random streams, so the
# first N patients are the same whatever the cohort size.
CHUNK = 1024


def simulate_art4hiv(patients=8916, months=60, seed=0):
    """Simulates the embedded ART-for-HIV cohort.

    Args:
        patients: int, number of patients (the public file has 8,916).
        months: int, monthly steps per patient (60 in the public file).
        seed: int; the same seed gives the same cohort.

    Returns:
        DataFrame of ``patients * months`` rows in the public file's 15
        columns and codes, sorted by (PatientID, Timestep).
    """
    if patients < 1 or months < 1:
        raise ValueError(f"patients and months must be positive, got {patients} and {months}")
    # Every chunk is simulated whole (the draws' shapes fix the stream), then cut.
    chunks = [
        _simulate_chunk(np.random.default_rng([seed, k]), CHUNK, months, first_id=start)
        for k, start in enumerate(range(0, patients, CHUNK))
    ]
    return pd.concat(chunks, ignore_index=True).iloc[: patients * months]


def _simulate_chunk(rng, n, months, first_id):
    female, ethnic, adherence, set_point, lymphocytes, weights = _demographics(rng, n)
    regimen = rng.choice(len(REGIMENS), size=n, p=weights)
    effective = rng.random(n) < 0.35 + 0.6 * adherence
    naive = rng.random(n) < 0.3
    log_vl = np.where(naive, set_point, rng.normal(1.4, 0.3, size=n))
    cd4 = rng.lognormal(np.log(np.where(naive, 300.0, 550.0)), 0.4, size=n)
    failing_months = np.zeros(n)

    records = np.zeros((months, n, 10))
    regimens = np.zeros((months, n), dtype=np.int64)
    flags = np.zeros((months, n, 3), dtype=np.int64)
    last_vl, last_cd4 = np.full(n, np.nan), np.full(n, np.nan)
    for month in range(months):
        # Virological dynamics under the current regimen.
        target = np.where(effective, 1.3, set_point)
        rate = np.where(effective, 0.45, 0.35)
        log_vl = log_vl + rate * (target - log_vl) + rng.normal(0.0, 0.12, size=n)
        resistance = effective & (rng.random(n) < 0.006 * (1.5 - adherence))
        effective = effective & ~resistance
        failing_months = np.where(log_vl > 3.0, failing_months + 1, 0)

        suppressed = log_vl < 2.3
        cd4 = cd4 * np.exp(np.where(suppressed, 0.012, -0.025) + rng.normal(0, 0.05, size=n))
        cd4 = np.clip(cd4, 10.0, 2500.0)

        # Regimen switches: rare when working, likely after failure.
        switch = rng.random(n) < np.where(failing_months >= 2, 0.3, 0.008)
        if switch.any():
            regimen[switch] = rng.choice(len(REGIMENS), size=switch.sum(), p=weights)
            effective[switch] = rng.random(switch.sum()) < 0.45 + 0.5 * adherence[switch]
            failing_months[switch] = 0
        regimens[month] = regimen

        vl = np.clip(10.0 ** (log_vl + rng.normal(0, 0.1, size=n)), 0.2, 9.0e4)
        rel = np.clip(100.0 * cd4 / lymphocytes, 2.0, 60.0)

        visit_missed = rng.random(n) < 0.03
        vl_missing = (visit_missed | (rng.random(n) < 0.01)) & ~np.isnan(last_vl)
        cd4_missing = (visit_missed | (rng.random(n) < 0.01)) & ~np.isnan(last_cd4)
        drug_missing = rng.random(n) < 0.02
        vl = np.where(vl_missing, last_vl, vl)
        cd4_observed = np.where(cd4_missing, last_cd4, cd4)
        rel = np.where(cd4_missing, records[month - 1, :, 2] if month else rel, rel)
        last_vl, last_cd4 = vl, cd4_observed
        records[month, :, 0] = vl
        records[month, :, 1] = cd4_observed
        records[month, :, 2] = rel
        flags[month] = np.stack([vl_missing, cd4_missing, drug_missing], axis=1)

    return _frame(records, regimens, flags, female, ethnic, first_id)


def _demographics(rng, n):
    """Per patient: sex, ethnicity, adherence, viral set point, lymphocytes; regimen weights."""
    female = rng.random(n) < FEMALE_SHARE
    ethnic = (
        np.where(
            female,
            rng.choice(4, size=n, p=ETHNIC_GIVEN_FEMALE),
            rng.choice(4, size=n, p=ETHNIC_GIVEN_MALE),
        )
        + 1
    )
    adherence = rng.beta(6.0, 1.5, size=n)
    set_point = rng.normal(4.5, 0.5, size=n)
    lymphocytes = rng.lognormal(np.log(1800.0), 0.3, size=n)
    weights = REGIMENS[:, 5] / REGIMENS[:, 5].sum()
    return female, ethnic, adherence, set_point, lymphocytes, weights


def _frame(records, regimens, flags, female, ethnic, first_id):
    """The long frame of one chunk's `(months, n, ...)` arrays, a row per patient-month."""
    months, n = regimens.shape
    codes = REGIMENS[regimens][..., :5].astype(np.int64)  # (months, n, 5)
    frame = {
        "VL": records[..., 0].T.ravel(),
        "CD4": records[..., 1].T.ravel(),
        "Rel CD4": records[..., 2].T.ravel(),
        "Gender": np.repeat(np.where(female, 2, 1), months),
        "Ethnic": np.repeat(ethnic, months),
    }
    for k, name in enumerate(REGIMEN_COLUMNS):
        frame[name] = codes[..., k].T.ravel()
    for k, name in enumerate(("VL (M)", "CD4 (M)", "Drug (M)")):
        frame[name] = flags[..., k].T.ravel()
    frame["PatientID"] = np.repeat(np.arange(first_id, first_id + n), months)
    frame["Timestep"] = np.tile(np.arange(months), n)
    return pd.DataFrame(frame, columns=list(COLUMNS))
