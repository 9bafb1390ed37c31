"""Bootstrap and session lifecycle: client config, sessions, heartbeats, telemetry, capabilities."""

import asyncio
import uuid

from fastapi import APIRouter, Header, Request

from gateway import wire
from gateway.deps import OwnerDep, ServiceDep
from gateway.errors import Gone
from gateway.session_lifetimes import end_session

router = APIRouter(prefix="/api/v1")

# Explicit values for every flag we depend on, so a future SDK default cannot change behaviour.
CLIENT_CONFIG = {
    "pjwt_auth_enabled": False,
    # chunks of one forward_backward arrive in seq_id order
    "parallel_fwdbwd_chunks": False,
    "proto_compress_fwdbwd": False,
    "custom_loss_server_side": False,
    "sample_use_retrieve_futures": False,
    "sample_join_sampling_session": False,
    "use_pyqwest_transport": True,
}


@router.post("/client/config")
async def client_config() -> dict:
    return CLIENT_CONFIG


@router.post("/client/dynamic_config")
async def dynamic_config() -> dict:
    return {"refresh_interval_sec": 300, "sample_cancel_enabled": False, "sample_cancel_max_batch_size": 64}


@router.post("/create_session")
async def create_session(
    body: wire.CreateSession,
    service: ServiceDep,
    owner: OwnerDep,
    x_idempotency_key: str | None = Header(default=None),
) -> dict:
    # a retried create_session (the same user's same idempotency key) gets the same session
    session_id = await service.store.add_session(
        f"sess-{uuid.uuid4().hex[:12]}", owner, body.tags, body.user_metadata or {}, x_idempotency_key or None
    )
    return {"session_id": session_id, "type": "create_session"}


@router.post("/session_heartbeat")
async def session_heartbeat(body: wire.SessionRef, service: ServiceDep, owner: OwnerDep) -> dict:
    await service.owned_session(owner, body.session_id)
    if await service.store.session_finished(body.session_id):
        # 410 tells the SDK to stop its heartbeat loop (quietly, at info level)
        raise Gone(f"session {body.session_id!r} has ended")
    await service.store.touch_session(body.session_id)
    return {"type": "session_heartbeat"}


@router.post("/sessions/{session_id}/finish")
async def finish_session(session_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    await service.owned_session(owner, session_id)
    await asyncio.to_thread(end_session, service, session_id)
    return {}


@router.post("/telemetry")
async def telemetry(request: Request) -> dict:
    return {"status": "accepted"}


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/get_server_capabilities")
async def get_server_capabilities(service: ServiceDep) -> dict:
    models = [
        {"model_name": name, "trainable": True, "sampleable": True} for name in service.registry.names()
    ]
    return {"supported_models": models}


@router.post("/cancel_future")
async def cancel_future() -> dict:
    return {}
