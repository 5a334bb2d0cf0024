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
    ("fidelity", "autocorrelation_mae", "Autocorrelation MAE (0 best)"),
    ("utility", "discriminative_score", "Discriminative score (0 best)"),
    ("utility", "tstr_mae", "Next-month error, trained on synthetic"),
    ("utility", "trtr_mae", "Next-month error, trained on real"),
    ("utility", "tstr_ratio", "TSTR / TRTR (1 best)"),
    ("privacy", "dcr_ratio", "DCR ratio, synthetic / holdout (about 1 is safe)"),
    ("privacy", "exact_copies", "Exact copies of training patients (0 safe)"),
    ("privacy", "membership_auc", "Membership inference AUC (0.5 safe)"),
    ("privacy", "attribute_accuracy", "Attribute inference accuracy"),
    ("privacy", "attribute_baseline", "Attribute majority-class baseline"),
]


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


def _html(metrics, figures):
    rows = "".join(
        f"<tr><td>{area}</td><td>{html.escape(label)}</td>"
        f"<td class=num>{_fmt(metrics[area].get(key))}</td></tr>"
        for area, key, label in HEADLINES
        if key in metrics[area]
    )
    rows += "".join(
        f"<tr><td>fidelity</td><td>{html.escape(label)}</td><td class=num>{_fmt(value)}</td></tr>"
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
<p>{setup["real_patients"]} real training patients, {setup["holdout_patients"]} holdout
patients and {setup["synthetic_patients"]} synthetic patients, compared over their first
{setup["months"]} time steps (seed {setup["seed"]}).</p>
<h2>Verdict</h2><ul>{verdicts}</ul>
<h2>Summary</h2>
<table><tr><th>area</th><th>metric</th><th>value</th></tr>{rows}</table>
{images}
</body></html>
"""
