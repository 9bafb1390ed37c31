"""retrieve_future: long-polls until the result is ready, or answers try_again."""

from fastapi import APIRouter, Response

from gateway import wire
from gateway.deps import OwnerDep, ServiceDep
from gateway.errors import NotFound

router = APIRouter(prefix="/api/v1")


@router.post("/retrieve_future")
async def retrieve_future(body: wire.RetrieveFuture, service: ServiceDep, owner: OwnerDep):
    try:
        payload = await service.futures.wait(body.request_id, owner, service.settings.long_poll_s)
    except KeyError:
        # another user's request id is answered as an unknown one
        raise NotFound(f"unknown request_id {body.request_id!r}") from None
    if payload is None:
        return {"type": "try_again", "request_id": body.request_id, "queue_state": "active"}
    return Response(content=payload.body, media_type=payload.content_type)
