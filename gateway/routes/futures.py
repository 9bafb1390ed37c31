"""retrieve_future: long-polls until the result is ready, or answers try_again."""

from fastapi import APIRouter, Response

from gateway import wire
from gateway.deps import OwnerDep, ServiceDep
from gateway.errors import NotFound

router = APIRouter(prefix="/api/v1")


@router.post("/retrieve_future")
async def retrieve_future(body: wire.RetrieveFuture, service: ServiceDep, owner: OwnerDep):
    if not service.futures.exists(body.request_id):
        raise NotFound(f"unknown request_id {body.request_id!r}")
    payload = await service.futures.wait(body.request_id, service.settings.long_poll_s)
    if payload is None:
        return {"type": "try_again", "request_id": body.request_id, "queue_state": "active"}
    return Response(content=payload.body, media_type=payload.content_type)
