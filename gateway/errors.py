"""Where every exception becomes an HTTP answer, for both APIs.

`answer_of` classifies (anvil/errors.py's hierarchy, FastAPI's validation errors, Starlette's
HTTP errors, anything else); each app renders the answer in its own shape: the Tinker routes as
`{"detail": message}`, the OpenAI routes as OpenAI's `{"error": {...}}` (gateway/openai_errors.py).
A bad request is a 4xx whose message names the field, never a 5xx (the SDK retries 5xx for
minutes) and never an empty 400 (the SDK takes that for a proxy rejection). Failed futures take
their category from `anvil.errors.failure_of`, the same classification.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from anvil.errors import Conflict, Gone, NotFound, TooLarge, Unauthorized, UserError

__all__ = [
    "Conflict", "ErrorAnswer", "Gone", "NotFound", "TooLarge", "Unauthorized", "UserError", "answer_of",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

# the parts of a validation error's location that say where, not which field
_LOCATION_KINDS = ("body", "query", "path", "header", "cookie")
# a union's failed branches add their type names ("str", "list[int]"); they name no field
_TYPE_NAMES = ("str", "int", "float", "bool", "list", "dict", "none")
_TYPE_PREFIXES = ("constrained-", "function-")
MAX_LISTED_PROBLEMS = 5


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    message: str
    field: str | None = None
    code: str | None = None


def answer_of(exc: BaseException) -> ErrorAnswer:
    if isinstance(exc, UserError):
        return ErrorAnswer(exc.status_code, exc.message, exc.field, getattr(exc, "code", None))
    if isinstance(exc, RequestValidationError):
        return ErrorAnswer(400, *validation_message(exc.errors(), located=True))
    if isinstance(exc, HTTPException):
        return ErrorAnswer(exc.status_code, str(exc.detail))
    log.error("request failed", exc_info=exc)
    return ErrorAnswer(500, f"the server failed to answer: {type(exc).__name__}: {exc}")


def invalid(exc: pydantic.ValidationError, prefix: str = "") -> UserError:
    """A pydantic error of a value validated by hand (not a request body) as a user error."""
    message, field = validation_message(exc.errors(), prefix)
    return UserError(message, field=field)


def validation_message(errors, prefix: str = "", located: bool = False) -> tuple[str, str | None]:
    """(message, first field) naming every field at fault. The values themselves are never
    echoed: a NaN or a megabyte string in them would make the answer unencodable or huge.
    `located`: each error's location starts with where the field is (FastAPI's "body", "query"...)."""
    if not errors:
        return "invalid request", None
    problems = []
    for error in errors[:MAX_LISTED_PROBLEMS]:
        loc = tuple(error.get("loc", ()))
        field = field_of(loc[1:] if located and loc and loc[0] in _LOCATION_KINDS else loc, prefix)
        problems.append((_problem(error, field), field))
    message = "; ".join(problem for problem, _ in problems)
    if len(errors) > MAX_LISTED_PROBLEMS:
        message += f" (and {len(errors) - MAX_LISTED_PROBLEMS} more problems)"
    return message, problems[0][1]


def field_of(loc, prefix: str = "") -> str | None:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part in _TYPE_NAMES or part.startswith(_TYPE_PREFIXES)):
            break
        else:
            path += f".{part}" if path else str(part)
    return path or None


def _problem(error: dict, field: str | None) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "json_invalid":
        return "the request body is not valid JSON"
    if field is None:
        return "the request needs a JSON body" if kind == "missing" else f"the request body: {error.get('msg', 'invalid')}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"{field} must be {bounds[kind]} {limit}"
    messages = {
        "missing": f"missing required field: {field}",
        "extra_forbidden": f"unrecognized field: {field}",
        "finite_number": f"{field} must be a finite number",
        "string_too_long": f"{field} must be at most {ctx.get('max_length')} characters",
        "too_long": f"{field} must have at most {ctx.get('max_length')} items",
    }
    return messages.get(kind) or f"{field}: {error.get('msg', 'invalid value')}"


Render = Callable[[ErrorAnswer], dict]


def tinker_body(answer: ErrorAnswer) -> dict:
    return {"detail": answer.message}


def install_error_handlers(app: FastAPI, render: Render) -> None:
    async def answer(request: Request, exc: Exception) -> JSONResponse:
        error = answer_of(exc)
        return JSONResponse(render(error), status_code=error.status)

    for kind in (UserError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, answer)
