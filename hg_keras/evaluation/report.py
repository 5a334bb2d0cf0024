"""The evaluation report: metrics.json, PNG figures and one self-contained HTML page."""

import base64
import html
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hg_keras.files import atomic_write  # noqa: E402

HEADLINES = [
    ("fidelity", "ks_mean", "Mean KS statistic, numerics (0 best)"),
    ("fidelity", "tvd_mean", "Mean total variation, discrete (0 best)"),
    ("fidelity", "correlation_mae", "Pearson correlation MAE (0 best)"),
    ("fidelity", "kendall_mae", "Kendall's tau MAE (0 best)"),
    ("fidelity", "trend_correlation_mae", "Trend correlation MAE (0 best)"),
    ("fidelity", "cycle_correlation_mae", "Cycle correlation MAE (0 best)"),
    ("fidelity", "mode_coverage", "Static groups reproduced (1 best)"),
    ("fidelity", "smallest_group_synthetic_share", "Smallest group, synthetic share"),
    ("fidelity", "smallest_group_real_share", "Smallest group, real share"),
    ("fidelity", "autocorrelation_mae", "Autocorrelation MAE, lags 1-6 (0 best)"),
    ("fidelity", "switch_ratio_worst", "Worst switch-rate factor, synthetic vs real (1 best)"),
    ("utility", "discriminative_score", "Discriminative score (0 best)"),
    ("utility", "discriminative_score_std", "Discriminative score, std over classifier seeds"),
    ("utility", "tstr_mae", "Next-month error, trained on synthetic"),
    ("utility", "trtr_mae", "Next-month error, trained on real"),
    ("utility", "tstr_ratio", "TSTR / TRTR (1 best)"),
    ("utility", "tstr_ratio_std", "TSTR / TRTR, std over classifier seeds"),
    ("privacy", "dcr_ratio", "DCR ratio, synthetic / holdout (about 1 is safe)"),
    ("privacy", "exact_copies", "Exact copies of training patients (0 safe)"),
    ("privacy", "membership_auc", "Membership inference AUC (0.5 safe)"),
    ("privacy", "attribute_accuracy", "Attribute inference accuracy"),
    ("privacy", "attribute_baseline", "Attribute majority-class baseline"),
]


# Which value of a headline is best, for marking the winner of a comparison:
# lower, higher, or closest to a value. Unlisted rows are not marked.
BEST = {
    "ks_mean": "low",
    "tvd_mean": "low",
    "correlation_mae": "low",
    "kendall_mae": "low",
    "trend_correlation_mae": "low",
    "cycle_correlation_mae": "low",
    "mode_coverage": "high",
    "autocorrelation_mae": "low",
    "switch_ratio_worst": "low",
    "discriminative_score": "low",
    "tstr_mae": "low",
    "tstr_ratio": "low",
    "dcr_ratio": 1.0,
    "exact_copies": "low",
    "membership_auc": 0.5,
}


def write_report(metrics, details, out_dir, history_csv=None):
    """Writes ``metrics.json``, the figures and ``report.html`` into `out_dir` (atomically).

    Args:
        metrics, details: from :func:`hg_keras.evaluation.evaluate`.
        history_csv: optional path of a run's ``logs/history.csv`` (training curves).

    Returns:
        Path of ``report.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "distributions.png": _distributions(details),
        "correlations.png": _heatmaps(details),
        "static_groups.png": _groups(details),
        "trajectories.png": _trajectories(details),
    }
    if history_csv is not None and Path(history_csv).exists():
        figures["training_curves.png"] = _training_curves(pd.read_csv(history_csv))
    figures = {name: fig for name, fig in figures.items() if fig is not None}
    for name, png in figures.items():
        atomic_write(out_dir / name, lambda tmp, png=png: Path(tmp).write_bytes(png), ".png")
    atomic_write(
        out_dir / "metrics.json",
        lambda tmp: Path(tmp).write_text(json.dumps(_clean(metrics), indent=2)),
    )
    page = _html(metrics, figures)
    atomic_write(out_dir / "report.html", lambda tmp: Path(tmp).write_text(page), ".html")
    return out_dir / "report.html"


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _trajectories(details, patients=4):
    """A few real and synthetic patients' numerics over time, side by side.

    What a white-noise generator cannot hide: real trajectories are smooth,
    noise jumps from month to month.
    """
    names = details["numeric_names"]
    if not names:
        return None
    real, synthetic = details["encoded"]["real"], details["encoded"]["synthetic"]
    fig, axes = plt.subplots(
        len(names), 2, figsize=(10, 2.4 * len(names)), squeeze=False, sharey="row"
    )
    for row, name in enumerate(names):
        for col, (label, data) in enumerate((("real", real), ("synthetic", synthetic))):
            ax = axes[row, col]
            for k in range(min(patients, len(data))):
                ax.plot(data[k, :, row], linewidth=1)
            ax.set_title(f"{name}, {label} patients", fontsize=9)
            ax.set_ylim(-0.05, 1.05)
        axes[row, 0].set_ylabel("transformed [0, 1]")
    for ax in axes[-1]:
        ax.set_xlabel("month")
    fig.tight_layout()
    return _png(fig)


def _distributions(details):
    real, synthetic = details["encoded"]["real"], details["encoded"]["synthetic"]
    blocks = details["layout"].blocks
    columns = 4
    rows = math.ceil(len(blocks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), squeeze=False)
    for ax, block in zip(axes.ravel(), blocks):
        r = real[..., block.start : block.end].reshape(-1, block.end - block.start)
        s = synthetic[..., block.start : block.end].reshape(-1, block.end - block.start)
        if block.kind == "numeric":
            bins = np.linspace(0, 1, 31)
            ax.hist(r[:, 0], bins=bins, density=True, alpha=0.5, label="real")
            ax.hist(s[:, 0], bins=bins, density=True, alpha=0.5, label="synthetic")
            ax.set_xlabel("transformed scale [0, 1]")
        else:
            levels = np.arange(block.end - block.start)
            shares_r = np.bincount(np.argmax(r, 1), minlength=len(levels)) / len(r)
            shares_s = np.bincount(np.argmax(s, 1), minlength=len(levels)) / len(s)
            ax.bar(levels - 0.2, shares_r, width=0.4, label="real")
            ax.bar(levels + 0.2, shares_s, width=0.4, label="synthetic")
            names = details["labels"].get(block.name, [str(k) for k in levels])
            ax.set_xticks(
                levels, names, rotation=30 if len(levels) > 2 else 0, ha="right", fontsize=8
            )
            ax.set_ylabel("share of months")
        ax.set_title(block.name)
    for ax in axes.ravel()[len(blocks) :]:
        ax.axis("off")
    axes[0, 0].legend()
    fig.suptitle("Distributions: real vs synthetic")
    fig.tight_layout()
    return _png(fig)


def _heatmaps(details):
    panels = [("Static", details["pearson"], details["encoded_names"])]
    if len(details["numeric_names"]) > 1:
        panels += [
            ("Trend", details["trend"], details["numeric_names"]),
            ("Cycle", details["cycle"], details["numeric_names"]),
        ]
    fig, axes = plt.subplots(len(panels), 3, figsize=(15, 4.8 * len(panels)), squeeze=False)
    for row, (title, matrices, names) in enumerate(panels):
        difference = matrices["real"] - matrices["synthetic"]
        for col, (label, matrix) in enumerate(
            (
                ("real", matrices["real"]),
                ("synthetic", matrices["synthetic"]),
                ("real - synthetic", difference),
            )
        ):
            ax = axes[row, col]
            image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_title(f"{title}: {label}", fontsize=10)
            if len(names) <= 15:
                ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
                ax.set_yticks(range(len(names)), names, fontsize=7)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
        fig.colorbar(image, ax=axes[row].tolist(), shrink=0.8)
    return _png(fig)


def _groups(details):
    real, synthetic = details["tables"]["real"], details["tables"]["synthetic"]
    if not real:
        return None
    keys = sorted(set(real) | set(synthetic), key=lambda k: -real.get(k, 0.0))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(keys)), 4))
    x = np.arange(len(keys))
    ax.bar(x - 0.2, [real.get(k, 0.0) for k in keys], width=0.4, label="real")
    ax.bar(x + 0.2, [synthetic.get(k, 0.0) for k in keys], width=0.4, label="synthetic")
    ax.set_xticks(x, keys, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("share of patients")
    ax.set_title("Joint static groups (mode collapse check)")
    ax.legend()
    return _png(fig)


def _training_curves(history):
    names = [c for c in history.columns if c != "epoch" and not c.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot(history["epoch"] + 1, history[name])
        ax.set_title(name)
        ax.set_xlabel("epoch")
    return _png(fig)


def _fmt(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _lengths_and_missing(fidelity):
    lengths = fidelity.get("lengths") or {}
    if lengths:
        yield "Patient lengths, KS statistic (0 best)", lengths["ks"]
        yield "Mean length, real", lengths["real_mean"]
        yield "Mean length, synthetic", lengths["synthetic_mean"]
    for name, rates in (fidelity.get("missing_rates") or {}).items():
        yield f"{name} missing, real", rates["real"]
        yield f"{name} missing, synthetic", rates["synthetic"]
    for name, rates in (fidelity.get("switch_rates") or {}).items():
        yield f"{name} switch rate per month, real", rates["real"]
        yield f"{name} switch rate per month, synthetic", rates["synthetic"]
    for name, share in (fidelity.get("static_violations") or {}).items():
        yield f"{name}: patients whose static value varies (0 best)", share
    for name, share in (fidelity.get("unknown_codes") or {}).items():
        if share:
            yield f"{name}: rows with codes outside the schema (0 best)", share
    for name, share in (fidelity.get("invalid_values") or {}).items():
        if share:
            yield f"{name}: rows with invalid or forbidden missing values (0 best)", share


def _is_best(key, value, values):
    rule = BEST.get(key)
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if rule is None or not isinstance(value, (int, float)) or len(values) < 2:
        return False
    if rule == "low":
        return value == min(values)
    if rule == "high":
        return value == max(values)
    return abs(value - rule) == min(abs(v - rule) for v in values)


def write_comparison(named_metrics, out_dir):
    """Writes ``comparison.html`` and ``comparison.json``: one column per generator.

    Every generator was scored by :func:`hg_keras.evaluation.evaluate`
    against the same real and holdout cohorts with the same classifier
    seeds; the best value of each row is marked (bold, and in the JSON's
    ``best``).

    Args:
        named_metrics: dict name -> metrics, in column order.
        out_dir: folder.

    Returns:
        Path of ``comparison.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(named_metrics)
    rows, best = [], {}
    for area, key, label in HEADLINES:
        values = [named_metrics[n][area].get(key) for n in names]
        if all(v is None for v in values):
            continue
        winners = [n for n, v in zip(names, values) if _is_best(key, v, values)]
        if winners:
            best[f"{area}.{key}"] = winners
        cells = "".join(
            f"<td class=num>{'<b>' if n in winners else ''}{_fmt(v)}"
            f"{' *</b>' if n in winners else ''}</td>"
            for n, v in zip(names, values)
        )
        rows.append(f"<tr><td>{area}</td><td>{html.escape(label)}</td>{cells}</tr>")
    verdicts = "".join(
        f"<tr><td colspan=2>{area} verdict</td>"
        + "".join(f"<td>{html.escape(named_metrics[n]['verdicts'][area])}</td>" for n in names)
        + "</tr>"
        for area in ("fidelity", "utility", "privacy")
    )
    header = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    setup = named_metrics[names[0]]["setup"]
    page = f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>hg-keras comparison</title>
<style>
body {{ font-family: sans-serif; max-width: 1300px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; }}
td.num {{ text-align: right; font-family: monospace; }}
</style></head><body>
<h1>Synthetic cohorts side by side</h1>
<p>Each column scored against the same {setup["real_patients"]} real and
{setup["holdout_patients"]} holdout patients over {setup["months"]} time steps, with classifier
seeds {setup.get("classifier_seeds", setup["seed"])}. <b>*</b> marks the best value of a row.</p>
<table><tr><th>area</th><th>metric</th>{header}</tr>{"".join(rows)}{verdicts}</table>
</body></html>
"""
    summary = {
        "generators": names,
        "best": best,
        "metrics": {n: _clean(named_metrics[n]) for n in names},
    }
    atomic_write(
        out_dir / "comparison.json",
        lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)),
    )
    atomic_write(out_dir / "comparison.html", lambda tmp: Path(tmp).write_text(page), ".html")
    return out_dir / "comparison.html"


def _guarantee(record):
    """The report's first line: the run's differential-privacy guarantee, or that it has none."""
    if not record:
        return (
            "<p><b>No formal privacy guarantee</b>: the run was not trained with "
            "differential privacy; the privacy figures below are measurements.</p>"
        )
    return (
        f"<p><b>Differential privacy</b>: ({record['epsilon']:.3g}, {record['delta']:.3g})"
        f" per patient after {_release_text(record)}{record['updates']} generator updates"
        f" (target epsilon "
        f"{record['target_epsilon']:g}; {html.escape(record['accountant'])}).</p>"
    )


def _release_text(record):
    """The guarantee's words for a release of cohort marginals ("" without one)."""
    released = record.get("released")
    if not released:
        return ""
    return f"a release of the cohort's marginals (for {', '.join(released['terms'])}) and "


def _html(metrics, figures):
    floor = metrics.get("floor") or {}
    rows = "".join(
        f"<tr><td>{area}</td><td>{html.escape(label)}</td>"
        f"<td class=num>{_fmt(metrics[area].get(key))}</td>"
        f"<td class=num>{_fmt(floor[key]) if key in floor else ''}</td></tr>"
        for area, key, label in HEADLINES
        if key in metrics[area]
    )
    rows += "".join(
        f"<tr><td>fidelity</td><td>{html.escape(label)}</td><td class=num>{_fmt(value)}</td>"
        "<td></td></tr>"
        for label, value in _lengths_and_missing(metrics["fidelity"])
    )
    verdicts = "".join(
        f"<li><b>{area.capitalize()}</b>: {html.escape(text)}</li>"
        for area, text in metrics["verdicts"].items()
    )
    setup = metrics["setup"]
    images = "".join(
        f"<h2>{html.escape(name[:-4].replace('_', ' ').capitalize())}</h2>"
        f"<img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        for name, png in figures.items()
    )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>hg-keras evaluation report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; }}
td.num {{ text-align: right; font-family: monospace; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Synthetic cohort evaluation</h1>
{_guarantee(metrics.get("guarantee"))}
<p>{setup["real_patients"]} real training patients, {setup["holdout_patients"]} holdout
patients and {setup["synthetic_patients"]} synthetic patients, compared over their first
{setup["months"]} time steps (seed {setup["seed"]}).</p>
<h2>Verdict</h2><ul>{verdicts}</ul>
<h2>Summary</h2>
<p>The floor is what real patients score in place of the synthetic ones: the other real
set against the same reference, at the same size ({floor.get("patients", "-")} patients);
the verdicts grade the distance to it.</p>
<table><tr><th>area</th><th>metric</th><th>value</th><th>floor</th></tr>{rows}</table>
{images}
</body></html>
"""
