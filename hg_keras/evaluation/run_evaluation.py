"""Evaluating a trained run against its own training cohort (end of ``train``)."""

from pathlib import Path

from hg_keras.evaluation.evaluate import evaluate
from hg_keras.evaluation.report import write_report


def evaluate_run(run_dir, seed=0, epochs=10):
    """Samples as many patients as the run trained on and writes ``<run>/evaluation/``.

    The holdout is the cohort's next patients after the training ones (never
    trained on) when the cohort has them.

    Returns:
        (metrics, path of report.html).
    """
    from hg_keras.sampling import TrainedRun
    from hg_keras.training import load_training_cohort

    run_dir = Path(run_dir)
    run = TrainedRun(run_dir)
    real, holdout = load_training_cohort(run.config, run.info.get("data"), with_holdout=True)
    patients = real[run.schema.id].nunique()
    if run.schema.variable_length:
        synthetic = run.sample_frame(patients, seed=seed)  # lengths as in training
    else:
        months = int(real.groupby(run.schema.id).size().min())
        synthetic = run.sample_frame(patients, min(months, run.months), seed=seed)
    metrics, details = evaluate(
        real, synthetic, run.schema, holdout=holdout, seed=seed, epochs=epochs
    )
    report = write_report(
        metrics, details, run_dir / "evaluation", history_csv=run_dir / "logs" / "history.csv"
    )
    return metrics, report
