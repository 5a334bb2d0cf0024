"""Small simulated stand-in cohorts for the schemas beyond ART for HIV.

Each returns a long-format DataFrame in the exact columns and codes of its
config, with the awkward parts real extracts have: patients of different
lengths, irregular visit times, static attributes of every kind and missing
measurements. They exercise the schema language; they are not clinical models.
"""

import numpy as np
import pandas as pd

IRREGULAR_CONFIG = """\
schema:
  id: PatientID
  time: Day
  lengths: variable
  irregular_time: true
  variables:
    - {name: Age, kind: numeric, static: true, transform: minmax}
    - {name: Sex, kind: binary, static: true, levels: {0: Male, 1: Female}}
    - {name: Site, kind: categorical, static: true, levels: {1: North, 2: South, 3: East}}
    - {name: HR, kind: numeric, transform: minmax}
    - {name: Lactate, kind: numeric, transform: boxcox, missing: indicator}
    - {name: Vaso, kind: binary, levels: {0: "No", 1: "Yes"}}
model:
  latent_dim: 8
  patient_latent_dim: 4
  slow_noise_dim: 2
  hidden_units: 16
  conditional: true
  discrete_output: sample
training:
  patients: null
  batch_size: 32
  epochs: 2
  curriculum: [4, 8, 16]
  critic_steps: 1
"""


def irregular_cohort(patients=160, seed=0, missing_rate=0.4):
    """Lengths 1 to 16, visits 1 to 30 days apart, ~`missing_rate` of Lactate missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(patients):
        length = int(rng.integers(1, 17))
        age = float(np.round(rng.uniform(18, 90), 1))
        sex = int(rng.random() < 0.3)
        site = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        day = int(rng.integers(0, 5))
        hr = rng.normal(80 + 10 * sex, 8)
        for step in range(length):
            if step:
                day += int(rng.integers(1, 31))
            hr = float(np.clip(hr + rng.normal(0, 4), 40, 160))
            lactate = float(rng.lognormal(0.3 + 0.01 * (age - 50), 0.4))
            rows.append(
                {
                    "PatientID": 1000 + patient,
                    "Day": day,
                    "Age": age,
                    "Sex": sex,
                    "Site": site,
                    "HR": round(hr, 1),
                    "Lactate": np.nan if rng.random() < missing_rate else round(lactate, 2),
                    "Vaso": int(rng.random() < 0.2 + 0.3 * (hr > 95)),
                }
            )
    return pd.DataFrame(rows)


def sepsis_cohort(schema, patients=96, seed=0):
    """Health Gym sepsis shape: 1 to 20 steps, static Age/Gender/ReAd, decile codes."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(patients):
        length = int(rng.integers(1, 21))
        static = {
            "Demo001_Gender": int(rng.integers(0, 2)),
            "Demo002_Age": float(rng.uniform(18, 95)),
            "Demo003_ReAd": int(rng.random() < 0.15),
        }
        for step in range(length):
            row = {"PatientID": patient, "Timestep": step, **static}
            for variable in schema.variables:
                if variable.name in static:
                    continue
                if variable.is_numeric:
                    row[variable.name] = float(rng.lognormal(1.0, 0.5))
                else:
                    row[variable.name] = int(rng.choice(variable.codes))
            rows.append(row)
    return pd.DataFrame(rows)


def hypotension_cohort(schema, patients=48, hours=48, seed=0):
    """Health Gym hypotension shape: 48 hours, labs measured in some hours only."""
    rng = np.random.default_rng(seed)
    rates = {"urine": 0.6, "ALT": 0.05, "AST": 0.05, "FiO2": 0.3, "GCS_total": 0.3}
    rates.update({"PO2": 0.15, "lactic_acid": 0.15, "serum_creatinine": 0.1})
    rows = []
    for patient in range(patients):
        for hour in range(hours):
            row = {"PatientID": patient, "Hour": hour}
            for variable in schema.variables:
                observed = rng.random() < rates.get(variable.name, 1.0)
                if variable.is_numeric:
                    value = float(rng.lognormal(3.0, 0.3))
                else:
                    value = int(rng.choice(variable.codes))
                row[variable.name] = value if observed else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
