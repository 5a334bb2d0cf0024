"""Fidelity, utility and privacy of a synthetic cohort, and the HTML report."""

from hg_keras.evaluation.evaluate import evaluate, split_patients, verdicts
from hg_keras.evaluation.report import write_comparison, write_report

__all__ = ["evaluate", "split_patients", "verdicts", "write_comparison", "write_report"]
