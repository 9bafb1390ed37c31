"""The RestClient's endpoints: training runs, checkpoints, sessions."""

import asyncio
from datetime import UTC, datetime, timedelta

from typing import Annotated

from fastapi import APIRouter, Query

from anvil.errors import MAX_INT64
from gateway import wire
from gateway.checkpoint_expiry import is_expired
from gateway.deps import OwnerDep, ServiceDep
from gateway.errors import NotFound
from gateway.store import CheckpointRow, TrainingRunRow
from gateway.service import Service, parse_tinker_path

router = APIRouter(prefix="/api/v1")
# a page holds at most this many rows, whatever limit asks for
MAX_PAGE = 1000
Limit = Annotated[int, Query(ge=1, le=MAX_INT64)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT64)]


def checkpoint_json(row: CheckpointRow) -> dict:
    return {
        "checkpoint_id": row.checkpoint_id,
        "checkpoint_type": "training" if row.kind == "weights" else "sampler",
        "time": row.created,
        "tinker_path": row.tinker_path,
        "size_bytes": row.size_bytes,
        "public": row.public,
        "expires_at": row.expires_at,
        "user_metadata": row.user_metadata,
    }


async def training_run_json(service: Service, run: TrainingRunRow) -> dict:
    checkpoints = await service.checkpoints_of_run(run.model_id)
    training = [c for c in checkpoints if c.kind == "weights"]
    sampler = [c for c in checkpoints if c.kind == "sampler_weights"]
    return {
        "training_run_id": run.model_id,
        "base_model": run.base_model,
        "model_owner": run.owner,
        "is_lora": True,
        "corrupted": False,
        "lora_rank": run.lora["rank"],
        "last_request_time": run.last_request,
        "last_checkpoint": checkpoint_json(training[-1]) if training else None,
        "last_sampler_checkpoint": checkpoint_json(sampler[-1]) if sampler else None,
        "user_metadata": run.user_metadata,
    }


@router.get("/training_runs")
async def list_training_runs(service: ServiceDep, owner: OwnerDep, limit: Limit = 20, offset: Offset = 0) -> dict:
    runs, total = await service.store.training_runs(owner, min(limit, MAX_PAGE), offset)
    return {
        "training_runs": [await training_run_json(service, run) for run in runs],
        "cursor": {"offset": offset, "limit": limit, "total_count": total},
    }


@router.get("/training_runs/{run_id}")
async def get_training_run(run_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    return await training_run_json(service, await service.owned_run(owner, run_id))


@router.get("/training_runs/{run_id}/checkpoints")
async def list_run_checkpoints(run_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    await service.owned_run(owner, run_id)
    return {"checkpoints": [checkpoint_json(c) for c in await service.checkpoints_of_run(run_id)]}


@router.get("/checkpoints")
async def list_user_checkpoints(service: ServiceDep, owner: OwnerDep, limit: Limit = 100, offset: Offset = 0) -> dict:
    rows, total = await service.store.checkpoints_of_owner(owner, min(limit, MAX_PAGE), offset)
    live = [row for row in rows if not is_expired(row)]
    total -= len(rows) - len(live)  # expired ones the sweep has not removed yet
    return {
        "checkpoints": [checkpoint_json(c) for c in live],
        "cursor": {"offset": offset, "limit": limit, "total_count": total},
    }


@router.delete("/training_runs/{run_id}/checkpoints/{checkpoint_id:path}")
async def delete_checkpoint(run_id: str, checkpoint_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    # DELETE .../checkpoints/<kind>/<name>/publish (unpublish) arrives here too: {checkpoint_id:path}
    # takes it whole, and a route of its own could not tell it from deleting a checkpoint "publish"
    kind_name, _, action = checkpoint_id.rpartition("/")
    if action == "publish" and kind_name.count("/") == 1:
        return await unpublish_checkpoint(run_id, kind_name, service, owner)
    row = await _owned_checkpoint(service, owner, run_id, checkpoint_id)
    await asyncio.to_thread(service.remove_checkpoint, row)
    return {}


@router.post("/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/publish")
async def publish_checkpoint(run_id: str, checkpoint_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    await _owned_checkpoint(service, owner, run_id, checkpoint_id)
    await service.store.set_checkpoint_public(run_id, checkpoint_id, True)
    return {}


async def unpublish_checkpoint(run_id: str, checkpoint_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    await _owned_checkpoint(service, owner, run_id, checkpoint_id)
    await service.store.set_checkpoint_public(run_id, checkpoint_id, False)
    return {}


@router.put("/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/ttl")
async def set_checkpoint_ttl(
    run_id: str, checkpoint_id: str, body: wire.CheckpointTtl, service: ServiceDep, owner: OwnerDep
) -> dict:
    await _owned_checkpoint(service, owner, run_id, checkpoint_id)
    expires = None
    if body.ttl_seconds is not None:  # positive and bounded (gateway/wire.py)
        expires = (datetime.now(UTC) + timedelta(seconds=body.ttl_seconds)).isoformat(timespec="microseconds")
    await service.store.set_checkpoint_expiry(run_id, checkpoint_id, expires)
    return {}


@router.post("/weights_info")
async def weights_info(body: wire.WeightsInfo, service: ServiceDep, owner: OwnerDep) -> dict:
    row = await service.readable_checkpoint(owner, body.tinker_path)
    run = await service.store.training_run(row.model_id)
    return {
        "base_model": run.base_model,
        "is_lora": True,
        "lora_rank": run.lora["rank"],
        "train_attn": run.lora["train_attn"],
        "train_mlp": run.lora["train_mlp"],
        "train_unembed": run.lora["train_unembed"],
    }


@router.get("/sessions")
async def list_sessions(service: ServiceDep, owner: OwnerDep) -> dict:
    return {"sessions": await service.store.sessions_of(owner)}


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    await service.owned_session(owner, session_id)
    return {
        "training_run_ids": await service.store.training_runs_of_session(session_id),
        "sampler_ids": await service.store.sampling_sessions_of_session(session_id),
    }


async def _owned_checkpoint(service: Service, owner: str, run_id: str, checkpoint_id: str) -> CheckpointRow:
    await service.owned_run(owner, run_id)
    parse_tinker_path(f"tinker://{run_id}/{checkpoint_id}")
    row = await service.checkpoint(run_id, checkpoint_id)
    if row is None:
        raise NotFound(f"checkpoint {checkpoint_id!r} of {run_id!r} not found")
    return row

