"""Errors of the OpenAI routes in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
with the status codes OpenAI clients turn into their own exception types (400 BadRequestError,
401 AuthenticationError, 404 NotFoundError, ...). The classification is the Tinker routes' own
(gateway/errors.py); only the shape differs, and only the /v1 app answers this way."""

from fastapi import FastAPI

from gateway.errors import ErrorAnswer, UserError, answer_of, install_error_handlers

_TYPE_OF_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
}


class OpenAIError(UserError):
    """A request the OpenAI routes refuse (or could not serve), naming the parameter at fault."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message, field=param)
        self.status_code = status
        self.code = code


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict:
    error_type = _TYPE_OF_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def openai_body(answer: ErrorAnswer) -> dict:
    code = answer.code or ("invalid_api_key" if answer.status == 401 else None)
    return error_body(answer.message, answer.status, answer.field, code)


def error_of(exc: BaseException) -> tuple[int, dict]:
    """(status, body) for an error raised while serving a request, in the OpenAI shape."""
    answer = answer_of(exc)
    return answer.status, openai_body(answer)


def install_openai_error_handlers(app: FastAPI) -> None:
    install_error_handlers(app, openai_body)
