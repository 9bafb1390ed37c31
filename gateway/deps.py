"""FastAPI dependencies: the service and the caller's identity."""

import re
from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.errors import Unauthorized
from gateway.service import Service, owner_of_key

# a key is its prefix and at least one more visible character, no whitespace, at most 256 in all;
# the SDK's JWTs (eyJ...) may be longer
_TINKER_KEY = re.compile(r"tml-[\x21-\x7e]{1,252}")
_JWT = re.compile(r"eyJ[\x21-\x7e]{1,8189}")


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_owner(x_api_key: Annotated[str | None, Header()] = None) -> str:
    if not x_api_key:
        raise Unauthorized("missing X-API-Key header (set TINKER_API_KEY=tml-...)", field="X-API-Key")
    return _owner_of(x_api_key, "X-API-Key")


def get_bearer_owner(
    authorization: Annotated[str | None, Header()] = None, x_api_key: Annotated[str | None, Header()] = None
) -> str:
    """The caller of the OpenAI routes: the same keys and users as the Tinker API, sent the way
    OpenAI clients send them (`Authorization: Bearer tml-...`), or as X-API-Key."""
    if authorization:
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("the Authorization header must be 'Bearer tml-...'", field="Authorization")
        return _owner_of(key.strip(), "Authorization")
    if x_api_key:
        return _owner_of(x_api_key, "X-API-Key")
    raise Unauthorized(
        "missing API key: send 'Authorization: Bearer tml-...' (the openai client's api_key)", field="Authorization"
    )


def _owner_of(api_key: str, header: str) -> str:
    if not (_TINKER_KEY.fullmatch(api_key) or _JWT.fullmatch(api_key)):
        raise Unauthorized(
            f"the {header} header is not an API key: keys are 'tml-' followed by 1-252 visible characters",
            field=header,
        )
    return owner_of_key(api_key)


ServiceDep = Annotated[Service, Depends(get_service)]
OwnerDep = Annotated[str, Depends(get_owner)]
BearerOwnerDep = Annotated[str, Depends(get_bearer_owner)]
