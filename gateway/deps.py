"""FastAPI dependencies: the service and the caller's identity.

Every route finds its caller here. A key made by `anvil keys create` is its user's (a revoked one
is refused); any other well-formed key is refused when keys are required, and in open mode is a
user of its own.
"""

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from gateway.service import Service, open_user_id
from gateway.store.api_keys import KEY_PREFIX


def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_owner(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> str:
    if not x_api_key:
        raise HTTPException(401, "missing X-API-Key header (set TINKER_API_KEY=tml-...)")
    return await _owner_of(get_service(request), x_api_key)


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
            raise HTTPException(401, "the Authorization header must be 'Bearer tml-...'")
        return await _owner_of(get_service(request), key.strip())
    if x_api_key:
        return await _owner_of(get_service(request), x_api_key)
    raise HTTPException(401, "missing API key: send 'Authorization: Bearer tml-...' (the openai client's api_key)")


async def _owner_of(service: Service, api_key: str) -> str:
    if not _well_formed(api_key):
        raise HTTPException(401, "API keys start with 'tml-' followed by the key's characters")
    known = await service.keys.key_of(api_key)
    if known is not None:
        if known.revoked_at is not None:
            raise HTTPException(401, f"API key {known.key_id} was revoked")
        return known.user_id
    if service.settings.require_keys:
        raise HTTPException(401, "unknown API key: this server accepts only keys made with `anvil keys create`")
    return open_user_id(api_key)


def _well_formed(api_key: str) -> bool:
    # "eyJ": the JWTs the SDK can send in place of a key
    for prefix in (KEY_PREFIX, "eyJ"):
        if api_key.startswith(prefix):
            rest = api_key[len(prefix) :]
            return bool(rest) and rest.isprintable() and not any(c.isspace() for c in rest)
    return False


ServiceDep = Annotated[Service, Depends(get_service)]
OwnerDep = Annotated[str, Depends(get_owner)]
BearerOwnerDep = Annotated[str, Depends(get_bearer_owner)]
