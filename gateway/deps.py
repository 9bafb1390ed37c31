"""FastAPI dependencies: the service and the caller's identity."""

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from gateway.service import Service, owner_of_key


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_owner(x_api_key: Annotated[str | None, Header()] = None) -> str:
    if not x_api_key:
        raise HTTPException(401, "missing X-API-Key header (set TINKER_API_KEY=tml-...)")
    if not (x_api_key.startswith("tml-") or x_api_key.startswith("eyJ")):
        raise HTTPException(401, "API keys start with 'tml-'")
    return owner_of_key(x_api_key)


ServiceDep = Annotated[Service, Depends(get_service)]
OwnerDep = Annotated[str, Depends(get_owner)]
