"""Trainer errors that are the request's fault, not the server's: a pool reports them as user
failures (anvil/errors.py); any other exception inside the trainer is the server's."""

from anvil.errors import UserError


class IncompatibleCheckpoint(UserError):
    """A checkpoint's adapter does not fit the model it is loaded into (other LoRA targets or rank)."""
