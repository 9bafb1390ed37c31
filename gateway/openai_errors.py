"""Errors of the OpenAI routes in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
with the status codes OpenAI clients turn into their own exception types (400 BadRequestError,
401 AuthenticationError, 404 NotFoundError, ...). Only the /v1 app answers this way; the Tinker
routes keep their `{"detail": ...}` bodies."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway.errors import UserError
from losses.types import LossInputError

log = logging.getLogger(__name__)

_TYPE_OF_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
}


class OpenAIError(Exception):
    """A request the OpenAI routes refuse (or could not serve), naming the parameter at fault."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict:
    error_type = _TYPE_OF_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_of(exc: BaseException) -> tuple[int, dict]:
    """(status, body) for an error raised while serving a request, in the OpenAI shape."""
    if isinstance(exc, OpenAIError):
        return exc.status, error_body(exc.message, exc.status, exc.param, exc.code)
    if isinstance(exc, UserError):
        return exc.status_code, error_body(exc.message, exc.status_code)
    if isinstance(exc, LossInputError):
        return 400, error_body(str(exc), 400)
    log.error("OpenAI route failed", exc_info=exc)
    return 500, error_body(f"the server failed to answer: {type(exc).__name__}: {exc}", 500)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    @app.exception_handler(UserError)
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        status, body = error_of(exc)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        status, body = error_of(exc)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = "invalid_api_key" if exc.status_code == 401 else None
        return JSONResponse(error_body(str(exc.detail), exc.status_code, code=code), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI answers a malformed request with 400 (FastAPI's default is 422), and the message
        # never echoes the value: a NaN in it would make the error itself unencodable
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        param = _param_of(first.get("loc", ()))
        message = _message_of(first, param)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return JSONResponse(error_body(message, 400, param=param), status_code=400)


def _param_of(loc) -> str | None:
    parts = [part for part in loc if part != "body"]
    # a union's failed branches add their type names ("str", "list[int]"); they are no parameter
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "list", "dict")):
            break
        else:
            path += f".{part}" if path else str(part)
    return path or None


def _message_of(error: dict, param: str | None) -> str:
    kind = error.get("type", "")
    if kind == "json_invalid":
        return "the request body is not valid JSON"
    if kind == "missing":
        return f"missing required parameter: {param}" if param else "the request needs a JSON body"
    if kind == "extra_forbidden":
        return f"unrecognized request argument: {param}"
    if kind == "finite_number":
        return f"{param} must be a finite number"
    return f"{param}: {error.get('msg', 'invalid value')}" if param else error.get("msg", "invalid request")
