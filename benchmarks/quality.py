"""Which config gives the most realistic patients for the same training time?

Usage:
    python benchmarks/quality.py [--minutes 8] [--seeds 0 1] [--patients 1024]
        [--configs art4hiv benchmarks/candidates/v1-sized.yaml quick]
        [--out QUALITY.md] [--work runs/quality]
    python benchmarks/quality.py --cohorts quinidine arthritis [--updates 768]
        [--seeds 0 1] [--out QUALITY-real.md]
    python benchmarks/quality.py --cohorts embedded arthritis --epsilons inf 10 3 1

Each config is trained on the first `--patients` patients of the embedded
cohort for the same wall-clock budget and each seed (configs alternate
within a seed, so a machine that drifts hurts none of them more), with the
generator saved at four points of the budget. Every snapshot samples as many
patients as were trained on and is evaluated by ``hg_keras.evaluation.evaluate``
against the *next* `--patients` patients, which no run ever trains on
(``reference="holdout"``). Writes `--out` (the table of every headline
metric per config, median over seeds with each seed's value, the machine and
the command), ``<out stem>.json`` (every figure) and ``<out stem>.png``
(metrics against training time). Configs are names of shipped configs or
YAML paths; a run stops at its config's epochs or at the budget, whichever
comes first.

``--cohorts`` trains on public real cohorts instead (``benchmarks/real_cohorts.py``,
schemas in ``benchmarks/cohorts/``) as a user would: ``train`` with its own 20 %
holdout, every config with the cohort's schema and the same number of generator
updates. ``art4hiv`` there means v1's settings on that schema, ``quick`` the
package's defaults (the schema file alone). ``embedded`` among them trains on the
embedded cohort as ``python cli.py train --config NAME`` does, on its first 1,024
patients, held out against the next 1,024. ``--minutes`` then caps every run's
clock (v1's model takes hours for 768 updates of 60 months on a CPU), and the
table gives the updates each run reached. Each metric is shown beside its
floor: the training patients scored as if synthetic against the same holdout.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import hg_keras.models  # noqa: E402, F401  (registers the saved classes)
from hg_keras.callbacks import TimeBudget  # noqa: E402
from hg_keras.config import Config, load_config  # noqa: E402
from hg_keras.evaluation import evaluate  # noqa: E402
from hg_keras.holdout import load_training_cohort  # noqa: E402
from hg_keras.sampling import TrainedRun  # noqa: E402
from hg_keras.synthesizer import Synthesizer  # noqa: E402
from hg_keras.training import train  # noqa: E402

# (label, path in metrics.json, target, direction): the headline metrics.
HEADLINE = (
    ("KS mean", ("fidelity", "ks_mean"), 0.08, "low"),
    ("TVD mean", ("fidelity", "tvd_mean"), 0.04, "low"),
    ("autocorr. MAE", ("fidelity", "autocorrelation_mae"), 0.10, "low"),
    ("worst switch ratio", ("fidelity", "switch_ratio_worst"), 2.0, "low"),
    ("correlation MAE", ("fidelity", "correlation_mae"), 0.05, "low"),
    ("trend MAE", ("fidelity", "trend_correlation_mae"), 0.15, "low"),
    ("cycle MAE", ("fidelity", "cycle_correlation_mae"), 0.15, "low"),
    ("mode coverage", ("fidelity", "mode_coverage"), 1.0, "high"),
    ("discriminative", ("utility", "discriminative_score"), 0.25, "low"),
    ("TSTR ratio", ("utility", "tstr_ratio"), 1.3, "low"),
    ("exact copies", ("privacy", "exact_copies"), 0, "low"),
    ("DCR ratio", ("privacy", "dcr_ratio"), 0.9, "high"),
    ("membership AUC", ("privacy", "membership_auc"), 0.55, "low"),
)
CURVES = ("KS mean", "autocorr. MAE", "correlation MAE", "discriminative")
# The embedded cohort's patients in `--cohorts embedded`: README command 1's.
EMBEDDED_PATIENTS = 1024
SNAPSHOTS = (0.25, 0.5, 0.75, 1.0)


def lookup(metrics, path):
    value = metrics
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)


def cohorts(config, patients):
    """(training frame, never-trained frame): the first and the next `patients`."""
    config = config.replace_training(patients=patients, holdout=float(patients))
    return load_training_cohort(config, with_holdout=True)


def score(run, generator, patients, real, unseen, seed, max_epochs, repeats):
    """Metrics of `patients` drawn from the saved `generator`, against `unseen`."""
    run.generator = keras.models.load_model(generator)
    synthetic = run.sample_frame(patients, months=run.months, seed=seed)
    metrics, _ = evaluate(
        real,
        synthetic,
        run.schema,
        holdout=unseen,
        seed=seed,
        max_epochs=max_epochs,
        reference="holdout",
        repeats=repeats,
    )
    return metrics


def run_one(name, config, seed, seconds, patients, work, max_epochs):
    out = Path(work) / f"{name}-seed{seed}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    # A config's own budget still applies: the default stops at its updates
    # (its figures are then exactly those of `python cli.py train`), v1's 200
    # never finish within a CPU budget.
    config = config.replace_training(seed=seed, patients=patients, holdout=float(patients))
    budget = TimeBudget(seconds, [f * seconds for f in SNAPSHOTS[:-1]], folder=out / "snapshots")
    started = time.perf_counter()
    train(config, out=out, verbose=0, callbacks=[budget])
    wall = time.perf_counter() - started
    real, unseen = cohorts(config, patients)
    run = TrainedRun(out)
    points = []
    last = len(budget.snapshots) - 1
    for k, elapsed, updates in budget.snapshots:
        generator = out / "snapshots" / f"generator-{k}.keras"
        # The final figures average 3 classifier seeds; the curve's 1.
        metrics = score(
            run, generator, patients, real, unseen, seed, max_epochs, 3 if k == last else 1
        )
        points.append({"seconds": elapsed, "updates": updates, "metrics": metrics})
        print(
            f"{name} seed {seed} at {elapsed:.0f} s ({updates} updates): "
            + ", ".join(
                f"{label} {lookup(metrics, path):.3f}"
                for label, path, *_ in HEADLINE
                if label in CURVES and lookup(metrics, path) is not None
            ),
            flush=True,
        )
    result = {"config": name, "seed": seed, "train_wall_seconds": wall, "points": points}
    selection = out / "checkpoint" / "selection.json"
    if selection.exists():
        # The run released its best snapshot by its validation patients; the points
        # above are the generator as it stood. Score the released one the same way.
        metrics = score(run, out / "generator.keras", patients, real, unseen, seed, max_epochs, 3)
        result["released"] = {"metrics": metrics, **json.loads(selection.read_text())}
        print(
            f"{name} seed {seed} released (update {result['released']['best']['updates']}): "
            f"discriminative {lookup(metrics, ('utility', 'discriminative_score')):.3f}",
            flush=True,
        )
    return result


def real_config(name, schema_path):
    """Config `name`'s model and training with a real cohort's schema.

    The schema file alone is the package's default (what a user gets); any other
    config lends its model and training (``art4hiv``: v1's), with the curriculum
    following the cohort's lengths and no cap on patients.
    """
    own = load_config(schema_path)
    if name == "quick":
        return own
    data = load_config(name).to_dict()
    data["schema"] = own.to_dict()["schema"]
    data["training"].update(curriculum=None, patients=None)
    return Config.from_dict(data, where=f"{name} on {Path(schema_path).name}")


class UpdateCount(keras.callbacks.Callback):
    """Counts the generator updates of a run (one per training batch)."""

    def __init__(self):
        super().__init__()
        self.updates = 0

    def on_train_batch_end(self, batch, logs=None):
        self.updates += 1


def run_real(cohort, name, seed, updates, work, max_epochs, epsilon=None, minutes=None):
    """Trains config `name` on a cohort as `train` does; metrics with floors.

    ``embedded`` without `epsilon` is the embedded cohort as ``python cli.py
    train`` reads it, on `EMBEDDED_PATIENTS` patients. With `epsilon` the default
    trains on the cohort's schema with public bounds (``cohorts/<cohort>-private.yaml``;
    ``embedded``: the embedded cohort's, from a CSV), privately unless `epsilon` is
    infinite. `minutes` caps the training clock.
    """
    from real_cohorts import SCHEMAS, write, write_embedded

    if cohort == "embedded" and epsilon is None:
        data, schema = None, None
    elif cohort == "embedded":
        data, schema = write_embedded(Path(work) / "cohorts"), SCHEMAS / "art4hiv-private.yaml"
    else:
        data, schema = write(cohort, Path(work) / "cohorts")
    if epsilon is not None:
        schema = schema.with_name(f"{cohort}-private.yaml") if cohort != "embedded" else schema
    out = Path(work) / f"{cohort}-{Path(name).stem}-seed{seed}"
    done = out / "quality.json"
    if done.exists():  # an interrupted benchmark keeps the runs it finished
        print(f"{cohort} {name} seed {seed}: kept the finished run in {out} (delete it to retrain)")
        return json.loads(done.read_text())
    if out.exists():
        import shutil

        shutil.rmtree(out)
    if schema is None:
        config = load_config(name).replace_training(patients=EMBEDDED_PATIENTS)
    else:
        config = real_config("quick" if epsilon is not None else name, schema)
    privacy = {"epsilon": epsilon} if epsilon not in (None, float("inf")) else None
    started = time.perf_counter()
    synth = Synthesizer(config, seed=seed, updates=updates, minutes=minutes, privacy=privacy)
    count = UpdateCount()
    synth.fit(data, out=out, verbose=0, callbacks=[count])
    wall = time.perf_counter() - started
    metrics = synth.evaluate(repeats=3, max_epochs=max_epochs)
    print(
        f"{cohort} {name} seed {seed} ({wall:.0f} s): "
        + ", ".join(
            f"{label} {lookup(metrics, path):.3f}"
            for label, path, *_ in HEADLINE
            if label in CURVES and lookup(metrics, path) is not None
        ),
        flush=True,
    )
    result = {
        "cohort": cohort,
        "config": Path(name).stem,
        "seed": seed,
        "train_wall_seconds": wall,
        "updates": count.updates,
        "metrics": metrics,
        "guarantee": synth.folder.read_info().get("privacy"),
    }
    done.write_text(json.dumps(result))
    return result


def floor_value(metrics, path):
    """The metric's floor (training patients scored as synthetic), or None."""
    return lookup(metrics.get("floor") or {}, path[-1:])


def real_table(results, names):
    """Headline metrics per config and their floor: median over seeds (each seed)."""
    labels = {"art4hiv": "v1 (art4hiv)", "quick": "default"}
    rows = ["| metric | " + " | ".join(labels.get(n, n) for n in names) + " | floor |"]
    rows.append("|---" * (len(names) + 2) + "|")
    for label, path, _, _ in HEADLINE:
        cells = []
        for getter, subset in [
            (lookup, [r for r in results if r["config"] == n]) for n in names
        ] + [(floor_value, [r for r in results if r["config"] == names[-1]])]:
            values = [getter(r["metrics"], path) for r in subset]
            values = [v for v in values if v is not None]
            cells.append(
                f"{np.median(values):.3g} ({', '.join(f'{v:.3g}' for v in values)})"
                if values
                else "–"
            )
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    walls = [
        np.median([r["train_wall_seconds"] for r in results if r["config"] == n]) for n in names
    ]
    rows.append("| training wall (s) | " + " | ".join(f"{w:.0f}" for w in walls) + " | |")
    counts = [[r["updates"] for r in results if r["config"] == n and "updates" in r] for n in names]
    if all(counts):
        rows.append(
            "| generator updates | "
            + " | ".join(f"{np.median(c):.0f} ({', '.join(map(str, c))})" for c in counts)
            + " | |"
        )
    spent = []
    for n in names:
        records = [r.get("guarantee") for r in results if r["config"] == n]
        spent.append(
            ", ".join(f"{g['epsilon']:.2f} (delta {g['delta']:.1e})" for g in records if g) or "–"
        )
    if any(cell != "–" for cell in spent):
        rows.append("| spent epsilon | " + " | ".join(spent) + " | |")
    return "\n".join(rows)


def main_real(args, command, machine):
    if args.epsilons:
        runs = {f"epsilon {e:g}": e for e in args.epsilons}
    else:
        runs = dict.fromkeys(args.configs)  # shipped names or config files
    results = [
        run_real(
            cohort, name, seed, args.updates, args.work, args.max_epochs, epsilon, args.minutes
        )
        for cohort in args.cohorts
        for seed in args.seeds
        for name, epsilon in runs.items()
    ]
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    names = [Path(n).stem for n in runs]
    sections = [
        "# Quality by cohort",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}; {platform.platform()}.  ",
        f"Each config trained {args.updates} generator updates per seed (seeds {args.seeds})"
        + (f", or {args.minutes:g} minutes if sooner," if args.minutes else "")
        + " on the cohort's training patients, as `python cli.py train --config <schema> --data "
        "<csv>` does (20 % held out within static groups; the embedded cohort: its first "
        f"{EMBEDDED_PATIENTS} patients against the next {EMBEDDED_PATIENTS}, as `python cli.py "
        "train` does), and scored on the held-out patients "
        "by the package's judge. Floor: the training patients themselves scored as if "
        "synthetic, at equal sizes. Cells: median over seeds (each seed's value).",
    ]
    for cohort in args.cohorts:
        subset = [r for r in results if r["cohort"] == cohort]
        setup = subset[0]["metrics"]["setup"]
        scope = (
            f"Compared: {setup['months']} steps of {setup['real_patients']} training, "
            f"{setup['synthetic_patients']} synthetic and {setup['holdout_patients']} held-out "
            f"patients (reference: {setup['reference']})."
        )
        sections += ["", f"## {cohort}", "", scope, "", real_table(subset, names)]
    text = "\n".join(sections) + "\n"
    out.write_text(text)
    print(text)


def final(result):
    """The metrics of the generator a run released (its best snapshot, or its last)."""
    return result.get("released", result["points"][-1])["metrics"]


def median_table(results, names):
    rows = []
    header = "| metric | target | " + " | ".join(names) + " |"
    rows.append(header)
    rows.append("|---" * (len(names) + 2) + "|")
    for label, path, target, direction in HEADLINE:
        cells = []
        for name in names:
            values = [lookup(final(r), path) for r in results if r["config"] == name]
            values = [v for v in values if v is not None]
            if not values:
                cells.append("–")
                continue
            median = float(np.median(values))
            met = median <= target if direction == "low" else median >= target
            each = ", ".join(f"{v:.3g}" for v in values)
            cells.append(f"{'**' if met else ''}{median:.3g}{'**' if met else ''} ({each})")
        sign = "≤" if direction == "low" else "≥"
        rows.append(f"| {label} | {sign} {target:g} | " + " | ".join(cells) + " |")
    updates = []
    for name in names:
        counts = [r["points"][-1]["updates"] for r in results if r["config"] == name]
        updates.append(f"{int(np.median(counts))}")
    rows.append("| generator updates | | " + " | ".join(updates) + " |")
    return "\n".join(rows)


def time_to_target(results, name, label):
    """Seconds at which the median over seeds first reaches its target (or None)."""
    path, target, direction = next((p, t, d) for lab, p, t, d in HEADLINE if lab == label)
    runs = [r for r in results if r["config"] == name]
    for index in range(min(len(r["points"]) for r in runs)):
        values = [lookup(r["points"][index]["metrics"], path) for r in runs]
        if any(v is None for v in values):
            return None
        median = float(np.median(values))
        if (median <= target) if direction == "low" else (median >= target):
            return float(np.median([r["points"][index]["seconds"] for r in runs]))
    return None


def plot(results, names, path):
    figure, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for axis, label in zip(axes, CURVES):
        metric_path, target, _ = next((p, t, d) for lab, p, t, d in HEADLINE if lab == label)
        for name in names:
            runs = [r for r in results if r["config"] == name]
            points = min(len(r["points"]) for r in runs)
            seconds = [
                np.median([r["points"][i]["seconds"] for r in runs]) / 60 for i in range(points)
            ]
            values = [
                np.median([lookup(r["points"][i]["metrics"], metric_path) for r in runs])
                for i in range(points)
            ]
            axis.plot(seconds, values, marker="o", label=name)
        axis.axhline(target, color="grey", linestyle="--", linewidth=1)
        axis.set_title(label)
        axis.set_xlabel("training minutes")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=float,
        help="training budget per run (default 8); with --cohorts, a cap on each run's clock",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--patients", type=int, default=1024)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["art4hiv", "benchmarks/candidates/v1-sized.yaml", "quick"],
    )
    parser.add_argument("--out", default="QUALITY.md")
    parser.add_argument("--work", default="runs/quality")
    parser.add_argument(
        "--max-epochs", type=int, default=200, help="ceiling of the converged judge's epochs"
    )
    parser.add_argument(
        "--cohorts",
        nargs="+",
        help="real cohorts (benchmarks/real_cohorts.py) instead of the embedded one",
    )
    parser.add_argument(
        "--updates", type=int, default=768, help="generator updates per run on a real cohort"
    )
    parser.add_argument(
        "--epsilons",
        type=float,
        nargs="+",
        help="with --cohorts (which may name 'embedded'): the default at each privacy target "
        "(inf: without privacy) on the cohort's schema with public bounds",
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU"
    if args.cohorts:
        return main_real(args, command, machine)

    args.minutes = 8.0 if args.minutes is None else args.minutes
    configs = {Path(name).stem: load_config(name) for name in args.configs}
    names = list(configs)
    results = []
    for seed in args.seeds:
        for name in names:
            results.append(
                run_one(
                    name,
                    configs[name],
                    seed,
                    args.minutes * 60,
                    args.patients,
                    args.work,
                    args.max_epochs,
                )
            )
    out = Path(args.out)
    stem = out.with_suffix("")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, names, stem.with_suffix(".png"))
    reach = []
    for name in names:
        for label in ("KS mean", "discriminative"):
            seconds = time_to_target(results, name, label)
            when = f"{seconds / 60:.1f} min" if seconds is not None else "not within the budget"
            reach.append(f"- {name}: {label} reaches its target at {when}")
    text = "\n".join(
        [
            "# Quality benchmark",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine}; {platform.platform()}.  ",
            f"Each config trained {args.minutes:g} min per seed (seeds {args.seeds}) on the first "
            f"{args.patients} embedded patients; evaluated against the next {args.patients} "
            "(never trained on). Cells: median over seeds (each seed's value); **bold** meets "
            "the target.",
            "",
            median_table(results, names),
            "",
            "Time to quality (median over seeds; snapshots at 1/4, 1/2, 3/4 and all of the "
            "budget):",
            "",
            *reach,
            "",
            f"![metrics against training time]({stem.with_suffix('.png').name})",
            "",
        ]
    )
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
