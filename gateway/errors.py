"""User errors: a bad request is a 4xx with a body naming the problem, never a 5xx (the SDK retries
5xx for minutes) and never an empty 400 (the SDK takes that for a proxy rejection)."""


class UserError(Exception):
    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(UserError):
    status_code = 404


class Conflict(UserError):
    # 409 is retried by the SDK; used only where a retry can succeed
    status_code = 409


class Gone(UserError):
    # what the SDK's heartbeat loop takes for "this session has ended"
    status_code = 410
