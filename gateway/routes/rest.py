"""The RestClient's endpoints: training runs, checkpoints, sessions."""

import asyncio
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from gateway import wire
from gateway.deps import OwnerDep, ServiceDep
from gateway.checkpoint_expiry import is_expired
from gateway.errors import NotFound, UserError
from gateway.metadata import CheckpointRow, TrainingRunRow
from gateway.service import Service, parse_tinker_path

router = APIRouter(prefix="/api/v1")


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


def training_run_json(service: Service, run: TrainingRunRow) -> dict:
    checkpoints = service.checkpoints_of_run(run.model_id)
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
async def list_training_runs(service: ServiceDep, owner: OwnerDep, limit: int = 20, offset: int = 0) -> dict:
    runs, total = service.metadata.training_runs(owner, _limit(limit), max(offset, 0))
    return {
        "training_runs": [training_run_json(service, run) for run in runs],
        "cursor": {"offset": offset, "limit": limit, "total_count": total},
    }


@router.get("/training_runs/{run_id}")
async def get_training_run(run_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    return training_run_json(service, service.owned_run(owner, run_id))


@router.get("/training_runs/{run_id}/checkpoints")
async def list_run_checkpoints(run_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    service.owned_run(owner, run_id)
    return {"checkpoints": [checkpoint_json(c) for c in service.checkpoints_of_run(run_id)]}


@router.get("/checkpoints")
async def list_user_checkpoints(service: ServiceDep, owner: OwnerDep, limit: int = 100, offset: int = 0) -> dict:
    rows, total = service.metadata.checkpoints_of_owner(owner, _limit(limit), max(offset, 0))
    live = [row for row in rows if not is_expired(row)]
    total -= len(rows) - len(live)  # expired ones the sweep has not removed yet
    return {
        "checkpoints": [checkpoint_json(c) for c in live],
        "cursor": {"offset": offset, "limit": limit, "total_count": total},
    }


@router.delete("/training_runs/{run_id}/checkpoints/{checkpoint_id:path}")
async def delete_checkpoint(run_id: str, checkpoint_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    row = _owned_checkpoint(service, owner, run_id, checkpoint_id)
    await asyncio.to_thread(service.remove_checkpoint, row)
    return {}


@router.post("/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/publish")
async def publish_checkpoint(run_id: str, checkpoint_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    _owned_checkpoint(service, owner, run_id, checkpoint_id)
    service.metadata.set_checkpoint_public(run_id, checkpoint_id, True)
    return {}


@router.delete("/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/publish")
async def unpublish_checkpoint(run_id: str, checkpoint_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    _owned_checkpoint(service, owner, run_id, checkpoint_id)
    service.metadata.set_checkpoint_public(run_id, checkpoint_id, False)
    return {}


@router.put("/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/ttl")
async def set_checkpoint_ttl(
    run_id: str, checkpoint_id: str, body: wire.CheckpointTtl, service: ServiceDep, owner: OwnerDep
) -> dict:
    _owned_checkpoint(service, owner, run_id, checkpoint_id)
    expires = None
    if body.ttl_seconds is not None:
        if body.ttl_seconds <= 0:
            raise UserError("ttl_seconds must be positive (or null for no expiry)")
        expires = (datetime.now(UTC) + timedelta(seconds=body.ttl_seconds)).isoformat()
    service.metadata.set_checkpoint_expiry(run_id, checkpoint_id, expires)
    return {}


@router.post("/weights_info")
async def weights_info(body: wire.WeightsInfo, service: ServiceDep, owner: OwnerDep) -> dict:
    row = service.readable_checkpoint(owner, body.tinker_path)
    run = service.metadata.training_run(row.model_id)
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
    return {"sessions": service.metadata.sessions_of(owner)}


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    service.owned_session(owner, session_id)
    return {
        "training_run_ids": service.metadata.training_runs_of_session(session_id),
        "sampler_ids": service.metadata.sampling_sessions_of_session(session_id),
    }


def _owned_checkpoint(service: Service, owner: str, run_id: str, checkpoint_id: str) -> CheckpointRow:
    service.owned_run(owner, run_id)
    parse_tinker_path(f"tinker://{run_id}/{checkpoint_id}")
    row = service.checkpoint(run_id, checkpoint_id)
    if row is None:
        raise NotFound(f"checkpoint {checkpoint_id!r} of {run_id!r} not found")
    return row


def _limit(limit: int) -> int:
    return min(max(limit, 1), 1000)
