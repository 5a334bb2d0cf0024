"""Evaluating a trained run against its own training cohort (end of ``train``)."""

from hg_keras.errors import InputError
from hg_keras.evaluation.evaluate import evaluate
from hg_keras.evaluation.report import write_report
from hg_keras.evaluation.utility import MAX_EPOCHS
from hg_keras.holdout import load_training_cohort
from hg_keras.sampling import TrainedRun


def evaluate_run(run_dir, seed=0, data=None, repeats=3, max_epochs=MAX_EPOCHS):
    """Samples as many patients as the run trained on and writes ``<run>/evaluation/``.

    The holdout is the run's held-out patients (``holdout.json``, never
    trained on). A run trained with ``training.holdout: 0`` has none: the
    evaluation then splits the training patients and its privacy verdict
    says that figure is not a test on unseen patients.

    Args:
        data: the training DataFrame, for a run fitted on one in memory.
        repeats: classifier seeds to average the discriminative and TSTR scores over.
        max_epochs: the most epochs a post-hoc network trains for.

    Returns:
        (metrics, path of report.html).
    """
    run = TrainedRun(run_dir)
    if data is not None:
        run.data = data
    real, holdout = load_training_cohort(run.config, run.data, with_holdout=True)
    ids = run.folder.read_holdout_ids()
    if ids is not None and holdout is not None:
        # The ids written at training time decide, whatever the cohort holds now.
        holdout = holdout[holdout[run.schema.id].isin(ids)].reset_index(drop=True)
        if holdout[run.schema.id].nunique() != len(ids):
            raise InputError(
                f"{run.run_dir}: the cohort no longer holds every held-out patient of "
                "holdout.json; evaluate with python cli.py evaluate --holdout PATH"
            )
    elif ids == []:
        holdout = None
    patients = real[run.schema.id].nunique()
    if run.schema.variable_length:
        synthetic = run.sample_frame(patients, seed=seed)  # lengths as in training
    else:
        months = int(real.groupby(run.schema.id).size().min())
        synthetic = run.sample_frame(patients, min(months, run.months), seed=seed)
    metrics, details = evaluate(
        real,
        synthetic,
        run.schema,
        holdout=holdout,
        seed=seed,
        max_epochs=max_epochs,
        reference="real" if holdout is None else "holdout",
        trained_on_all=holdout is None,
        repeats=repeats,
    )
    folder = run.folder
    guarantee = folder.read_info().get("privacy")
    if guarantee:
        metrics["guarantee"] = guarantee
    report = write_report(metrics, details, folder.evaluation_dir, history_csv=folder.history_csv)
    return metrics, report
