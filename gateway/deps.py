"""FastAPI dependencies: the service and the caller's identity."""

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from gateway.service import Service, owner_of_key


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_owner(x_api_key: Annotated[str | None, Header()] = None) -> str:
    if not x_api_key:
        raise HTTPException(401, "missing X-API-Key header (set TINKER_API_KEY=tml-...)")
    return _owner_of(x_api_key)


def get_bearer_owner(
    authorization: Annotated[str | None, Header()] = None, x_api_key: Annotated[str | None, Header()] = None
) -> str:
    """The caller of the OpenAI routes: the same keys and users as the Tinker API, sent the way
    OpenAI clients send them (`Authorization: Bearer tml-...`), or as X-API-Key."""
    if authorization:
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise HTTPException(401, "the Authorization header must be 'Bearer tml-...'")
        return _owner_of(key.strip())
    if x_api_key:
        return _owner_of(x_api_key)
    raise HTTPException(401, "missing API key: send 'Authorization: Bearer tml-...' (the openai client's api_key)")


def _owner_of(api_key: str) -> str:
    if not (api_key.startswith("tml-") or api_key.startswith("eyJ")):
        raise HTTPException(401, "API keys start with 'tml-'")
    return owner_of_key(api_key)


ServiceDep = Annotated[Service, Depends(get_service)]
OwnerDep = Annotated[str, Depends(get_owner)]
BearerOwnerDep = Annotated[str, Depends(get_bearer_owner)]
