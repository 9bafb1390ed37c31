"""The one error hierarchy: a `UserError` is the request's fault, anything else is the server's.

Every layer raises these (losses/, trainer/, sampler/ and the gateway alike), so one place can turn
them into answers: gateway/errors.py maps them to HTTP responses, and `failure_of` to the category
of a failed future. A user error is a 4xx (or a `user` failure) whose message names the field at
fault; it is never a 5xx, which the SDK retries for minutes.
"""

MAX_INT64 = 2**63 - 1


class UserError(Exception):
    """A request the server refuses as sent. `field` names the culprit when there is one."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class Unauthorized(UserError):
    status_code = 401


class NotFound(UserError):
    status_code = 404


class Conflict(UserError):
    # 409 is retried by the SDK; used only where a retry can succeed
    status_code = 409


class Gone(UserError):
    # what the SDK's heartbeat loop takes for "this session has ended"
    status_code = 410


class TooLarge(UserError):
    status_code = 413


def failure_of(exc: BaseException) -> tuple[str, str]:
    """(category, message) of a failed future: `user` for user errors, else `server`."""
    if isinstance(exc, UserError):
        return "user", exc.message
    return "server", f"{type(exc).__name__}: {exc}"
