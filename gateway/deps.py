"""FastAPI dependencies: the service and the caller's identity.

Every route finds its caller here. A key made by `anvil keys create` is its user's (a revoked one
is refused); any other well-formed key is refused when keys are required, and in open mode is a
user of its own.
"""

import re
from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.errors import Unauthorized
from gateway.service import Service, open_user_id

# a key is its prefix and at least one more visible character, no whitespace, at most 256 in all;
# the SDK's JWTs (eyJ...) may be longer
_TINKER_KEY = re.compile(r"tml-[\x21-\x7e]{1,252}")
_JWT = re.compile(r"eyJ[\x21-\x7e]{1,8189}")


def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_owner(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> str:
    if not x_api_key:
        raise Unauthorized("missing X-API-Key header (set TINKER_API_KEY=tml-...)", field="X-API-Key")
    return await _owner_of(get_service(request), x_api_key, "X-API-Key")


async def get_bearer_owner(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """The caller of the OpenAI routes: the same keys and users as the Tinker API, sent the way
    OpenAI clients send them (`Authorization: Bearer tml-...`), or as X-API-Key."""
    if authorization:
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("the Authorization header must be 'Bearer tml-...'", field="Authorization")
        return await _owner_of(get_service(request), key.strip(), "Authorization")
    if x_api_key:
        return await _owner_of(get_service(request), x_api_key, "X-API-Key")
    raise Unauthorized(
        "missing API key: send 'Authorization: Bearer tml-...' (the openai client's api_key)", field="Authorization"
    )


async def _owner_of(service: Service, api_key: str, header: str) -> str:
    if not (_TINKER_KEY.fullmatch(api_key) or _JWT.fullmatch(api_key)):
        raise Unauthorized(
            f"the {header} header is not an API key: keys are 'tml-' followed by 1-252 visible characters",
            field=header,
        )
    known = await service.keys.key_of(api_key)
    if known is not None:
        if known.revoked_at is not None:
            raise Unauthorized(f"API key {known.key_id} was revoked", field=header)
        return known.user_id
    if service.settings.require_keys:
        raise Unauthorized(
            "unknown API key: this server accepts only keys made with `anvil keys create`", field=header
        )
    return open_user_id(api_key)


ServiceDep = Annotated[Service, Depends(get_service)]
OwnerDep = Annotated[str, Depends(get_owner)]
BearerOwnerDep = Annotated[str, Depends(get_bearer_owner)]
