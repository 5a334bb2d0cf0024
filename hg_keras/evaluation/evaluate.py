"""One evaluation of a synthetic cohort against the real one: every metric, by area.

The real patients the generator was trained on (`real`) are compared with
the synthetic ones; privacy metrics also need real patients that were *not*
used in training (`holdout`). Without a holdout the real patients are split
in two, which keeps fidelity and utility meaningful but makes the privacy
figures an upper bound on safety only if the second half was truly unseen:
the report says so.
"""

import numpy as np
import scipy.stats
from sklearn.model_selection import GroupShuffleSplit

from hg_keras.data.transforms import CohortTransformer
from hg_keras.errors import InputError
from hg_keras.evaluation import fidelity, privacy, utility

ATTRIBUTE_MONTHS = 3
MAX_LAG = 6


def split_patients(frame, id_column, seed, share=0.5):
    """Splits a cohort into two disjoint sets of patients (seeded): (rest, `share` of them)."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    rest, chosen = next(splitter.split(frame, groups=frame[id_column]))
    return (
        frame.iloc[np.sort(rest)].reset_index(drop=True),
        frame.iloc[np.sort(chosen)].reset_index(drop=True),
    )


def _prefix(frame, schema, steps, source):
    lengths = frame.groupby(schema.id).size()
    if lengths.min() < steps:
        raise InputError(f"{source}: some patients have {lengths.min()} time steps, need {steps}")
    rank = frame.groupby(schema.id).cumcount()
    return frame[rank < steps].reset_index(drop=True)


def _long_enough(frame, schema, steps):
    """The first `steps` steps of the patients that have at least that many."""
    lengths = frame.groupby(schema.id, sort=False)[schema.id].transform("size")
    rank = frame.groupby(schema.id, sort=False).cumcount()
    return frame[(lengths >= steps) & (rank < steps)].reset_index(drop=True)


def _lengths_and_missing(real, synthetic, schema):
    """Length distributions and per-variable missing rates of the whole cohorts."""
    lengths = {
        k: f.groupby(schema.id).size().to_numpy()
        for k, f in (("real", real), ("synthetic", synthetic))
    }
    result = {
        "lengths": {
            "ks": float(scipy.stats.ks_2samp(lengths["real"], lengths["synthetic"]).statistic),
            "real_mean": float(lengths["real"].mean()),
            "synthetic_mean": float(lengths["synthetic"].mean()),
        }
    }
    result["missing_rates"] = {
        v.name: {
            "real": float(real[v.name].isna().mean()),
            "synthetic": float(synthetic[v.name].isna().mean()),
        }
        for v in schema.variables
        if v.missing != "error"
    }
    return result


def evaluate(
    real,
    synthetic,
    schema,
    holdout=None,
    seed=0,
    max_epochs=utility.MAX_EPOCHS,
    reference="real",
    repeats=3,
    defects=None,
    trained_on_all=False,
    floor=None,
):
    """Computes fidelity, utility and privacy metrics.

    Args:
        real: DataFrame of the training patients (validated, sorted).
        synthetic: DataFrame of synthetic patients in the same schema.
        schema: :class:`Schema`.
        holdout: DataFrame of real patients not used in training, or None to
            split `real` in two.
        seed: int, seeds the split and the post-hoc classifiers.
        max_epochs: int, the most epochs a post-hoc network trains for; each
            stops earlier once its validation loss stops improving.
        reference: ``real`` (default) compares the synthetic cohort's
            fidelity and discriminative score with the training patients;
            ``holdout`` with the held-out ones, which the generator never
            saw: the honest test of a generator (it measures what it
            learnt, not what it could have memorised). Privacy always
            compares training with holdout patients; TSTR always tests on
            the holdout.
        repeats: int, the discriminative score and the TSTR ratio are
            averaged over this many classifier seeds (`seed`, `seed + 1`,
            ...; the data split and the predictors' initial weights change
            with it) and reported with their standard deviation.
        defects: dict from :func:`hg_keras.data.load_synthetic` (codes
            outside the schema, repaired values), reported beside the
            static violations this function measures.
        floor: the ``metrics["floor"]`` of an earlier call with the same
            real and holdout patients, seed and settings, to reuse (it does
            not depend on the synthetic cohort); None computes it.
        trained_on_all: bool, the generator was trained on every patient
            of `real` and there is no holdout: the privacy verdict then says
            it was not tested, instead of grading a split of trained patients.

    Every headline metric also gets its floor (``metrics["floor"]``): the
    same metric with real patients in place of the synthetic ones (the
    training patients against the holdout, as many as the synthetic
    patients at most), what a perfect generator would score on this cohort
    at these sizes. The verdicts grade the distance to it.

    Variable-length cohorts: the temporal metrics compare the first `h` steps
    of the patients with at least `h` steps, `h` the real patients' median
    length; the length distribution (KS) and missing rates use every patient.

    Returns:
        (metrics, details): `metrics` is the JSON-ready nested dict
        (``fidelity``, ``utility``, ``privacy``, ``floor``, ``verdicts``, ``setup``);
        `details` holds the arrays the report plots.
    """
    if reference not in ("real", "holdout"):
        raise ValueError(f"reference must be 'real' or 'holdout', got {reference!r}")
    split = holdout is None
    if split:
        real, holdout = split_patients(real, schema.id, seed)
    _check_enough(real, holdout, schema.id)
    whole = _lengths_and_missing(real, synthetic, schema)
    whole["static_violations"] = fidelity.static_violations(
        synthetic, [v.name for v in schema.variables if v.static], schema.id
    )
    defects = defects or {}
    whole["unknown_codes"] = defects.get("unknown_codes", {})
    whole["invalid_values"] = defects.get("invalid_values", {})
    frames, steps = _aligned({"real": real, "synthetic": synthetic, "holdout": holdout}, schema)

    transformer = CohortTransformer(schema).fit(frames["real"])
    enc = {name: transformer.encode(f, dtype=np.float64) for name, f in frames.items()}
    # The real side of every fidelity and discriminative comparison.
    ref = {"real": enc[reference], "synthetic": enc["synthetic"]}
    ref_frames = {"real": frames[reference], "synthetic": frames["synthetic"]}
    fid, details = _fidelity(ref, ref_frames, transformer.layout, schema, steps, seed)
    fid.update(whole)
    numeric = [b.start for b in transformer.layout.numeric_blocks]
    seeds = [seed + k for k in range(max(1, repeats))]
    util = _utility(ref, enc, numeric, steps, seeds, max_epochs)
    floor = _floor(frames, enc, reference, transformer.layout, schema, steps, seeds, max_epochs)
    priv = _privacy(enc, transformer.layout, schema)
    priv["holdout_split_from_real"] = split
    priv["holdout_trained_on"] = bool(split and trained_on_all)

    metrics = {
        "setup": {
            "real_patients": int(len(enc["real"])),
            "synthetic_patients": int(len(enc["synthetic"])),
            "holdout_patients": int(len(enc["holdout"])),
            "months": steps,
            "seed": seed,
            "reference": reference,
            "classifier_seeds": seeds,
        },
        "fidelity": fid,
        "utility": util,
        "privacy": priv,
        "floor": floor,
    }
    metrics["verdicts"] = verdicts(metrics)
    details["encoded"] = {**enc, "real": ref["real"]}
    return metrics, details


def discriminative(real, synthetic, schema, seed=0, max_epochs=utility.MAX_EPOCHS):
    """The discriminative score of two long-format cohorts, aligned as :func:`evaluate`
    aligns them (the real patients' median length for variable lengths).

    What the run's snapshot choice scores (``training.validation``): one
    classifier seed, no other metric.
    """
    if schema.variable_length:
        steps = int(np.median(real.groupby(schema.id).size()))
        real, synthetic = (_long_enough(f, schema, steps) for f in (real, synthetic))
    else:
        steps = int(min(f.groupby(schema.id).size().min() for f in (real, synthetic)))
        real, synthetic = (_prefix(f, schema, steps, "") for f in (real, synthetic))
    if min(f[schema.id].nunique() for f in (real, synthetic)) < utility.FOLDS:
        return float("nan")
    transformer = CohortTransformer(schema).fit(real)
    encoded = [transformer.encode(f, dtype=np.float64) for f in (real, synthetic)]
    return utility.discriminative_score(*encoded, seed=seed, max_epochs=max_epochs)


def _check_enough(real, holdout, id_column, steps=None):
    if real[id_column].nunique() < 4 or holdout[id_column].nunique() < 2:
        length = f" with {steps} or more steps" if steps else ""
        raise InputError(f"evaluation needs at least 4 training and 2 holdout patients{length}")


def _aligned(frames, schema):
    """The three cohorts cut to a common number of steps: (frames, steps).

    Fixed lengths: the shortest patient's. Variable lengths: the real
    patients' median length, keeping the patients that reach it.
    """
    if schema.variable_length:
        steps = int(np.median(frames["real"].groupby(schema.id).size()))
        frames = {k: _long_enough(f, schema, steps) for k, f in frames.items()}
        _check_enough(frames["real"], frames["holdout"], schema.id, steps)
        if frames["synthetic"].empty:
            raise InputError(f"no synthetic patient has {steps} or more steps to compare")
        return frames, steps
    steps = int(min(f.groupby(schema.id).size().min() for f in frames.values()))
    return {k: _prefix(f, schema, steps, k) for k, f in frames.items()}, steps


def _fidelity(ref, ref_frames, layout, schema, steps, seed):
    """Fidelity metrics of `ref["synthetic"]` against `ref["real"]`, and the report's arrays."""
    numeric = [b.start for b in layout.numeric_blocks]
    names_numeric = [b.name for b in layout.numeric_blocks]
    labels = {v.name: dict(v.levels) for v in schema.variables if not v.is_numeric}
    marg = fidelity.marginals(ref["real"], ref["synthetic"], layout)
    ks = [m["ks"] for m in marg.values() if "ks" in m]
    tvd = [m["tvd"] for m in marg.values() if "tvd" in m]
    dependence, matrices = _dependence(ref, ref_frames, schema, numeric, seed)
    groups, tables = _groups(ref_frames, schema, labels)
    fid = {
        "marginals": marg,
        "ks_mean": float(np.mean(ks)) if ks else None,
        "tvd_mean": float(np.mean(tvd)) if tvd else None,
        **dependence,
        **groups,
        **_dynamics(ref, ref_frames, schema, numeric, names_numeric, steps),
    }
    details = {
        "layout": layout,
        **matrices,
        "tables": tables,
        "names": schema.names,
        "numeric_names": names_numeric,
        "encoded_names": layout.column_names(),
        "labels": {name: list(levels.values()) for name, levels in labels.items()},
    }
    return fid, details


def _dependence(ref, ref_frames, schema, numeric, seed):
    """Correlation metrics (Pearson, Kendall, trend, cycle) and their matrices."""
    matrices = {
        "pearson": {k: fidelity.pearson_matrix(ref[k]) for k in ref},
        "kendall": {
            k: fidelity.kendall_matrix(f, schema.names, seed=seed) for k, f in ref_frames.items()
        },
        "trend": {},
        "cycle": {},
    }
    for k in ref:
        matrices["trend"][k], matrices["cycle"][k] = fidelity.dynamic_correlations(
            ref[k][..., numeric]
        )

    def mae(name):
        return fidelity.correlation_mae(matrices[name]["real"], matrices[name]["synthetic"])

    several = len(numeric) > 1
    metrics = {
        "correlation_mae": mae("pearson"),
        "kendall_mae": mae("kendall"),
        "trend_correlation_mae": mae("trend") if several else None,
        "cycle_correlation_mae": mae("cycle") if several else None,
    }
    return metrics, matrices


def _groups(ref_frames, schema, labels):
    """Mode coverage of the static discrete groups, and their joint tables."""
    static_discrete = [v.name for v in schema.variables if v.static and not v.is_numeric]
    tables = {
        k: fidelity.joint_static_table(f, static_discrete, schema.id, labels)
        if static_discrete
        else {}
        for k, f in ref_frames.items()
    }
    coverage = fidelity.mode_coverage(tables["real"], tables["synthetic"])
    metrics = {
        "mode_coverage": coverage["coverage"],
        "smallest_group": coverage["smallest_group"],
        "smallest_group_real_share": coverage["smallest_real_share"],
        "smallest_group_synthetic_share": coverage["smallest_synthetic_share"],
    }
    return metrics, tables


def _dynamics(ref, ref_frames, schema, numeric, names_numeric, steps):
    """Autocorrelation of the numerics and switch rates of the time-varying levels."""
    dynamic_discrete = [v.name for v in schema.variables if not v.static and not v.is_numeric]
    max_lag = max(1, min(MAX_LAG, steps - 2))
    acf = {k: fidelity.autocorrelation(ref[k][..., numeric], max_lag) for k in ref}
    switches = {
        k: fidelity.switch_rates(f, dynamic_discrete, schema.id) for k, f in ref_frames.items()
    }
    return {
        "autocorrelation_mae": float(np.mean(np.abs(acf["real"] - acf["synthetic"]))),
        "autocorrelation": {
            name: {"real": acf["real"][i].tolist(), "synthetic": acf["synthetic"][i].tolist()}
            for i, name in enumerate(names_numeric)
        },
        "switch_rates": {
            c: {"real": switches["real"][c], "synthetic": switches["synthetic"][c]}
            for c in dynamic_discrete
        },
        **fidelity.switch_ratios(
            switches["real"],
            switches["synthetic"],
            # 5 switches' worth of pseudo-counts: a few switches more or less
            # in a small cohort are noise, not a factor of 2.
            pseudo=5.0 / max(1, _transitions(ref_frames["real"], schema.id)),
        ),
    }


# The headline metrics that get a floor, and where they are in `metrics`.
FLOORED = (
    "ks_mean",
    "tvd_mean",
    "correlation_mae",
    "trend_correlation_mae",
    "cycle_correlation_mae",
    "autocorrelation_mae",
    "switch_ratio_worst",
    "mode_coverage",
)


def _floor(frames, enc, reference, layout, schema, steps, seeds, max_epochs):
    """The headline metrics of real patients scored as if synthetic: the other real set
    (training or holdout) against the reference one, cut to the synthetic count."""
    other = "holdout" if reference == "real" else "real"
    ids = frames[other][schema.id].unique()
    keep = min(len(ids), len(enc["synthetic"]))
    chosen = np.sort(np.random.default_rng(seeds[0]).choice(len(ids), keep, replace=False))
    as_synthetic = frames[other][frames[other][schema.id].isin(ids[chosen])]
    ref = {"real": enc[reference], "synthetic": enc[other][chosen]}
    ref_frames = {"real": frames[reference], "synthetic": as_synthetic.reset_index(drop=True)}
    fid, _ = _fidelity(ref, ref_frames, layout, schema, steps, seeds[0])
    floor = {name: fid[name] for name in FLOORED}
    floor.update(
        _spread(
            "discriminative_score",
            [
                utility.discriminative_score(ref["real"], ref["synthetic"], s, max_epochs)
                for s in seeds
            ],
        )
    )
    # TSTR trains on the training patients then, which is TRTR: 1 by construction.
    floor["tstr_ratio"] = 1.0
    floor["patients"] = int(keep)
    return floor


def _utility(ref, enc, numeric, steps, seeds, max_epochs):
    """Discriminative score (synthetic vs reference patients) and TSTR on the holdout,
    each the mean over the classifier `seeds`."""
    util = _spread(
        "discriminative_score",
        [utility.discriminative_score(ref["real"], ref["synthetic"], s, max_epochs) for s in seeds],
    )
    if numeric and steps > 1:
        runs = [
            utility.predictive_scores(
                enc["synthetic"],
                enc["real"],
                enc["holdout"],
                numeric,
                seed=s,
                max_epochs=max_epochs,
            )
            for s in seeds
        ]
        for name in ("tstr_mae", "trtr_mae"):
            util[name] = float(np.mean([r[name] for r in runs]))
        util.update(_spread("tstr_ratio", [r["tstr_ratio"] for r in runs]))
    util["classifier_seeds"] = seeds
    return util


def _privacy(enc, layout, schema):
    """Distance to closest record, membership inference and attribute disclosure."""
    static_discrete = [v.name for v in schema.variables if v.static and not v.is_numeric]
    priv = privacy.distance_to_closest_record(enc["synthetic"], enc["real"], enc["holdout"])
    priv["membership_auc"] = privacy.membership_auc(enc["synthetic"], enc["real"], enc["holdout"])
    priv.update(_attribute_disclosure(enc, layout, schema, static_discrete))
    return priv


def _transitions(frame, id_column):
    """Month-to-month transitions in a cohort: rows minus patients."""
    return len(frame) - frame[id_column].nunique()


def _spread(name, values):
    """`name` (the mean), `name_std` and `name_runs` of repeated scores."""
    return {
        name: float(np.mean(values)),
        f"{name}_std": float(np.std(values)),
        f"{name}_runs": [float(v) for v in values],
    }


def _attribute_disclosure(enc, layout, schema, static_discrete):
    if not static_discrete:
        return {"attribute": None}
    target = layout.block(static_discrete[-1])
    static_cols = [c for c in layout.static_columns if not target.start <= c < target.end]
    dynamic_cols = [c for c in range(layout.width) if c not in layout.static_columns]
    months = min(ATTRIBUTE_MONTHS, enc["real"].shape[1])

    def features(x):
        return np.concatenate(
            [x[:, 0, static_cols], x[:, :months, dynamic_cols].reshape(len(x), -1)], axis=1
        )

    def labels(x):
        return np.argmax(x[:, 0, target.start : target.end], axis=1)

    result = privacy.attribute_disclosure(
        features(enc["synthetic"]),
        labels(enc["synthetic"]),
        features(enc["real"]),
        labels(enc["real"]),
    )
    return {"attribute": target.name, **result}


def verdicts(metrics):
    """Plain-language verdict per area from the headline numbers.

    Fidelity reads marginals (KS), pooled and dynamic correlations, static
    groups, temporal realism (autocorrelation MAE over lags 1-6 and the
    worst switch-rate factor) and schema defects (static attributes that
    vary within a patient, codes outside the schema); utility the
    discriminative score and the TSTR ratio. Each metric is graded by its
    distance to its floor (``metrics["floor"]``: what real patients score
    against the same reference at the same sizes), so a small cohort's
    sampling noise does not count against the generator.
    """
    floor = metrics.get("floor") or {}

    def excess(name, value):
        """How far `value` is above what real patients score (0 without a floor)."""
        base = floor.get(name)
        return max(0.0, value - (base if base is not None and base == base else 0.0))

    return {
        "fidelity": _fidelity_verdict(metrics["fidelity"], floor, excess),
        "utility": _utility_verdict(metrics["utility"], excess),
        "privacy": _privacy_verdict(metrics["privacy"]),
    }


def _fidelity_verdict(fid, floor, excess):
    ks = excess("ks_mean", fid["ks_mean"] or 0.0)
    correlation = excess("correlation_mae", fid["correlation_mae"])
    coverage = fid["mode_coverage"]
    coverage = 1.0 if coverage != coverage else coverage  # NaN: no static groups
    floor_coverage = floor.get("mode_coverage", 1.0)
    floor_coverage = 1.0 if floor_coverage != floor_coverage else floor_coverage
    coverage = min(1.0, coverage + 1.0 - floor_coverage)
    dynamic = max(
        excess("trend_correlation_mae", fid["trend_correlation_mae"] or 0.0),
        excess("cycle_correlation_mae", fid["cycle_correlation_mae"] or 0.0),
    )
    acf = excess("autocorrelation_mae", fid.get("autocorrelation_mae") or 0.0)
    switch = (fid.get("switch_ratio_worst") or 1.0) / max(floor.get("switch_ratio_worst", 1.0), 1.0)
    defects = max(
        [*fid.get("static_violations", {}).values(), *fid.get("unknown_codes", {}).values(), 0.0]
    )
    close = correlation < 0.1 and ks < 0.1 and dynamic < 0.15 and coverage >= 0.75
    broad = correlation < 0.2 and ks < 0.2 and dynamic < 0.3 and coverage >= 0.5
    if close and acf < 0.1 and switch <= 2 and defects == 0:
        verdict = (
            "good: marginals, correlations, trends, groups and month-to-month dynamics match "
            "closely"
        )
    elif broad and acf < 0.15 and switch <= 4 and defects < 0.05:
        verdict = "fair: broadly similar, with visible differences"
    else:
        verdict = "poor: distributions, correlations, trends, groups or dynamics differ markedly"
    problems = []
    if acf >= 0.15 or switch > 4:
        problems.append(
            f"trajectories unlike real ones over time (autocorrelation MAE {acf:.2f} above "
            f"real patients', switch rates off by up to {switch:.1f}x)"
        )
    violated = {k: v for k, v in fid.get("static_violations", {}).items() if v > 0}
    if violated:
        listed = ", ".join(f"{k} in {v:.0%}" for k, v in violated.items())
        problems.append(f"static attributes vary within patients ({listed})")
    unknown = {k: v for k, v in fid.get("unknown_codes", {}).items() if v > 0}
    if unknown:
        listed = ", ".join(f"{k} {v:.1%}" for k, v in unknown.items())
        problems.append(f"codes outside the schema ({listed} of rows)")
    return verdict + "".join(f"; {p}" for p in problems)


def _utility_verdict(util, excess):
    ratio = util.get("tstr_ratio", 1.0)
    discriminative = excess("discriminative_score", util["discriminative_score"])
    if discriminative < 0.1 and ratio < 1.2:
        return "good: hard to tell apart, and as useful for prediction"
    if discriminative < 0.25 and ratio < 1.5:
        return "fair: partly distinguishable or less useful for prediction"
    return "poor: easily told apart from real data or much less useful"


def _privacy_verdict(priv):
    if priv.get("holdout_trained_on"):
        return (
            "not tested: the run trained on every patient (training.holdout: 0), so no "
            "unseen patients were left to compare with; the figures compare two halves of "
            "the training patients and say nothing about leakage"
        )
    if priv["exact_copies"] > 0 or priv["membership_auc"] > 0.7 or priv["dcr_ratio"] < 0.5:
        verdict = "leak: synthetic patients copy or reveal training patients"
    elif priv["membership_auc"] > 0.6 or priv["dcr_ratio"] < 0.8:
        verdict = "caution: synthetic patients sit closer to training patients than new ones"
    else:
        verdict = "no sign of leakage: no copies, and training patients are not singled out"
    if priv["holdout_split_from_real"]:
        verdict += " (holdout split from --real: valid only if those patients were unseen)"
    return verdict


def headline(metrics):
    """One line: the headline scores, each with its floor in brackets."""
    floor = metrics.get("floor") or {}
    parts = []
    for label, area, key in (
        ("discriminative", "utility", "discriminative_score"),
        ("KS", "fidelity", "ks_mean"),
        ("correlation MAE", "fidelity", "correlation_mae"),
        ("TSTR ratio", "utility", "tstr_ratio"),
    ):
        value = metrics[area].get(key)
        if value is None:
            continue
        base = floor.get(key)
        parts.append(f"{label} {value:.3f}" + (f" ({base:.3f})" if base is not None else ""))
    return ", ".join(parts) + " (real patients' floor in brackets)"
