"""Sampling endpoints: sampling sessions and asample."""

from fastapi import APIRouter

from gateway import wire
from gateway.deps import OwnerDep, ServiceDep
from gateway.errors import NotFound, UserError
from gateway.quotas import check_sample_size
from gateway.store import SamplingSessionRow
from gateway.sample_requests import sample_work
from gateway.sample_scheduler import SampleJob
from gateway.sampling_weights import session_adapter
from gateway.service import Service

router = APIRouter(prefix="/api/v1")


@router.post("/create_sampling_session")
async def create_sampling_session(body: wire.CreateSamplingSession, service: ServiceDep, owner: OwnerDep) -> dict:
    await service.owned_session(owner, body.session_id)
    sampling_session_id = f"{body.session_id}:sample:{body.sampling_session_seq_id}"
    if body.model_path:
        checkpoint = await service.readable_checkpoint(owner, body.model_path)
        run = await service.store.training_run(checkpoint.model_id)
        if body.base_model and body.base_model != run.base_model:
            raise UserError(
                f"checkpoint {body.model_path!r} was trained on {run.base_model!r}, not on base_model {body.base_model!r}"
            )
        row = SamplingSessionRow(
            sampling_session_id, body.session_id, owner, run.base_model, body.model_path, checkpoint.folder
        )
    elif body.base_model:
        base = await service.base_model(body.base_model)
        row = SamplingSessionRow(sampling_session_id, body.session_id, owner, base.name, None, None)
    else:
        raise UserError("create_sampling_session needs model_path or base_model")
    await service.store.add_sampling_session(row)
    return {"sampling_session_id": sampling_session_id, "type": "create_sampling_session"}


@router.get("/samplers/{sampling_session_id}")
async def get_sampler(sampling_session_id: str, service: ServiceDep, owner: OwnerDep) -> dict:
    row = await _owned_sampling_session(service, owner, sampling_session_id)
    return {"sampler_id": row.sampling_session_id, "base_model": row.base_model, "model_path": row.model_path}


@router.post("/asample")
async def asample(body: wire.Sample, service: ServiceDep, owner: OwnerDep) -> dict:
    if body.sampling_session_id is None or body.seq_id is None:
        raise UserError("asample needs sampling_session_id and seq_id")
    row = await _owned_sampling_session(service, owner, body.sampling_session_id)
    sequence_ids = [f"{row.sampling_session_id}:{body.seq_id}:{i}" for i in range(body.num_samples)]
    known = service.sampling.known_request(row.sampling_session_id, body.seq_id)
    if known is not None:
        return {"request_id": known, "sample_sequence_ids": sequence_ids}
    work = sample_work(body, await service.base_model(row.base_model))
    check_sample_size(work.num_samples, work.max_tokens, service.settings.limits)
    job = SampleJob(row.sampling_session_id, body.seq_id, row.base_model, await session_adapter(service, row), work)
    return {"request_id": service.sampling.submit(job, owner), "sample_sequence_ids": sequence_ids}


async def _owned_sampling_session(service: Service, owner: str, sampling_session_id: str) -> SamplingSessionRow:
    row = await service.store.sampling_session(sampling_session_id)
    if row is None or row.owner != owner:
        raise NotFound(f"sampling_session_id {sampling_session_id!r} not found", field="sampling_session_id")
    return row
