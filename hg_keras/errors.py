"""User-facing errors.

Anything raised as :class:`InputError` is a problem with what the user gave
(a file, a column, a value, a flag). The CLI prints its message as one line
and exits non-zero without a traceback.
"""


class InputError(ValueError):
    """Bad user input: the message names the file, column, row or value."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where."""


class TrainingInterrupted(TrainingError):
    """Training was stopped by a signal; the last completed epoch is checkpointed."""
