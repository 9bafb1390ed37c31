"""Sampling endpoints: sampling sessions and asample."""

import asyncio
import logging
from pathlib import Path

from fastapi import APIRouter

from gateway import proto_codec, wire
from gateway.deps import OwnerDep, ServiceDep
from gateway.errors import NotFound, UserError
from gateway.futures import Payload
from gateway.metadata import SamplingSessionRow
from gateway.sample_requests import sample_work
from gateway.service import KEPT_EPHEMERAL_SAVES, Service

router = APIRouter(prefix="/api/v1")
log = logging.getLogger(__name__)


@router.post("/create_sampling_session")
async def create_sampling_session(body: wire.CreateSamplingSession, service: ServiceDep, owner: OwnerDep) -> dict:
    service.owned_session(owner, body.session_id)
    sampling_session_id = f"{body.session_id}:sample:{body.sampling_session_seq_id}"
    if body.model_path:
        checkpoint = service.readable_checkpoint(owner, body.model_path)
        run = service.metadata.training_run(checkpoint.model_id)
        row = SamplingSessionRow(
            sampling_session_id, body.session_id, owner, run.base_model, body.model_path, checkpoint.folder
        )
    elif body.base_model:
        base = await service.base_model(body.base_model)
        row = SamplingSessionRow(sampling_session_id, body.session_id, owner, base.name, None, None)
    else:
        raise UserError("create_sampling_session needs model_path or base_model")
    service.metadata.add_sampling_session(row)
    return {"sampling_session_id": sampling_session_id, "type": "create_sampling_session"}


@router.get("/samplers/{sampling_session_id}")
async def get_sampler(sampling_session_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    row = _owned_sampling_session(service, owner, sampling_session_id)
    return {"sampler_id": row.sampling_session_id, "base_model": row.base_model, "model_path": row.model_path}


@router.post("/asample")
async def asample(body: wire.Sample, service: ServiceDep, owner: OwnerDep) -> dict:
    if body.sampling_session_id is None or body.seq_id is None:
        raise UserError("asample needs sampling_session_id and seq_id")
    row = _owned_sampling_session(service, owner, body.sampling_session_id)
    sequence_ids = [f"{row.sampling_session_id}:{body.seq_id}:{i}" for i in range(body.num_samples)]
    key = (row.sampling_session_id, body.seq_id)
    if key in service.sample_requests:
        return {"request_id": service.sample_requests[key], "sample_sequence_ids": sequence_ids}
    work = sample_work(body, await service.base_model(row.base_model))
    adapter = Path(row.adapter_folder) if row.adapter_folder else None
    if adapter is not None and not adapter.is_dir():
        raise NotFound(
            f"the weights of sampler {row.sampling_session_id} are gone: its checkpoint was deleted, "
            f"or it is an unnamed save older than the model's {KEPT_EPHEMERAL_SAVES} most recent"
        )
    request_id = service.futures.create("Sample")
    service.remember_sample_request(key, request_id)
    task = asyncio.create_task(_run_sample(service, request_id, row.base_model, adapter, work))
    service.background_tasks.add(task)
    task.add_done_callback(service.background_tasks.discard)
    return {"request_id": request_id, "sample_sequence_ids": sequence_ids}


async def _run_sample(service: Service, request_id: str, base_model: str, adapter: Path | None, work) -> None:
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(service.sampler_pool, service.fleet.sample, base_model, adapter, work)
        service.futures.resolve(request_id, Payload.proto(proto_codec.sample_response(result)))
    except Exception as exc:  # deliberate: a failed sample fails its future, the server goes on
        log.exception("sample %s failed", request_id)
        service.futures.fail(request_id, f"{type(exc).__name__}: {exc}", "server")


def _owned_sampling_session(service: Service, owner: str, sampling_session_id: str) -> SamplingSessionRow:
    row = service.metadata.sampling_session(sampling_session_id)
    if row is None or row.owner != owner:
        raise NotFound(f"sampling session {sampling_session_id!r} not found")
    return row
