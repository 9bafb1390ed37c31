"""retrieve_future: long-polls until the result is ready, or answers try_again.

Not ready within the long poll: HTTP 408 with the try_again body. The SDK polls again at once on a
408 without a word (`tinker/lib/api_future_impl.py`), where a try_again answered with HTTP 200 makes
it log "Retrying request ... because of try_again" on every poll of a long request.
"""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

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
        return JSONResponse({"type": "try_again", "request_id": body.request_id, "queue_state": "active"}, status_code=408)
    return Response(content=payload.body, media_type=payload.content_type)
