"""Trainer errors that are the request's fault, not the server's.

A pool reports these as user failures; any other exception inside the trainer is the server's.
"""

from losses.types import LossInputError


class IncompatibleCheckpoint(ValueError):
    """A checkpoint's adapter does not fit the model it is loaded into (other LoRA targets or rank)."""


USER_ERRORS: tuple[type[Exception], ...] = (IncompatibleCheckpoint, LossInputError)
