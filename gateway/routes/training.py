"""Training endpoints: create/load models, forward_backward, optim_step, and saving weights.

Every operation on a model is queued on the press under its seq_id and answered with a future.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Request

from anvil import checkpoint_folders
from anvil.types import LoraSpec
from gateway import proto_codec, wire
from gateway.deps import OwnerDep, ServiceDep
from gateway.errors import UserError
from gateway.futures import Payload
from gateway.metadata import CheckpointRow, SamplingSessionRow, TrainingRunRow, now_iso
from gateway.press import TrainOp
from gateway.service import KEPT_EPHEMERAL_SAVES, Service, check_checkpoint_name
from gateway.train_requests import failing_op, forward_backward_op, optim_step_op
from trainer import checkpoints
from trainer.commands import (
    Command,
    CreateModel,
    CreateModelFromState,
    LoadState,
    SaveResult,
    SaveSamplerWeights,
    SaveState,
)

router = APIRouter(prefix="/api/v1")
MAX_LORA_RANK = 1024


def _future(request_id: str, model_id: str | None = None) -> dict:
    return {"request_id": request_id, **({"model_id": model_id} if model_id else {})}


@router.post("/create_model")
async def create_model(body: wire.CreateModel, service: ServiceDep, owner: OwnerDep) -> dict:
    service.owned_session(owner, body.session_id)
    model_id = f"{body.session_id}:train:{body.model_seq_id}"
    if (existing := service.press.request_id(model_id, 0)) is not None:
        return _future(existing, model_id)
    lora = body.lora_config or wire.LoraConfigWire()
    if not 1 <= lora.rank <= MAX_LORA_RANK:
        raise UserError(f"lora_config.rank must be between 1 and {MAX_LORA_RANK}, got {lora.rank}")
    if not (lora.train_attn or lora.train_mlp or lora.train_unembed):
        raise UserError("lora_config: at least one of train_attn, train_mlp, train_unembed must be true")
    optimizer = (body.optimizer_config or {}).get("type", "adamw")
    if optimizer != "adamw":
        raise UserError(f"optimizer {optimizer!r} is not supported; anvil trains with adamw")
    base = await service.base_model(body.base_model)
    spec = LoraSpec(lora.rank, lora.seed, lora.train_attn, lora.train_mlp, lora.train_unembed)
    _record_run(service, owner, body.session_id, model_id, base.name, spec, body.user_metadata)
    request_id = service.futures.create("CreateModel")
    command = CreateModel(model_id, base.name, spec)
    op = _answering_op(model_id, 0, request_id, command, {"model_id": model_id, "type": "create_model"})
    return _future(service.press.open_model(model_id, op), model_id)


@router.post("/get_info")
async def get_info(body: wire.ModelRef, service: ServiceDep, owner: OwnerDep) -> dict:
    run = service.owned_run(owner, body.model_id)
    base = await service.base_model(run.base_model)
    return {
        "type": "get_info",
        "model_id": run.model_id,
        # tokenizer_id is a folder the SDK's get_tokenizer() loads as is
        "model_data": {"arch": "lora", "model_name": run.base_model, "tokenizer_id": str(base.path)},
        "is_lora": True,
        "lora_rank": run.lora["rank"],
        "model_name": run.base_model,
    }


@router.post("/forward_backward")
async def forward_backward(request: Request, service: ServiceDep, owner: OwnerDep) -> dict:
    message = proto_codec.parse_forward_backward(await request.body(), request.headers.get("content-encoding"))
    run, existing = _next_op(service, owner, message.model_id, message.seq_id)
    if existing is not None:
        return _future(existing)
    base = await service.base_model(run.base_model)
    request_id = service.futures.create("ForwardBackward")
    service.metadata.touch_training_run(run.model_id)
    return _future(service.press.submit(forward_backward_op(message, base.vocab_size, request_id)))


@router.post("/optim_step")
async def optim_step(body: wire.OptimStep, service: ServiceDep, owner: OwnerDep) -> dict:
    run, existing = _next_op(service, owner, body.model_id, body.seq_id)
    if existing is not None:
        return _future(existing)
    return _future(service.press.submit(optim_step_op(body, service.futures.create("OptimStep"))))


@router.post("/save_weights")
async def save_weights(body: wire.SaveWeights, service: ServiceDep, owner: OwnerDep) -> dict:
    run, existing = _next_op(service, owner, body.model_id, body.seq_id)
    if existing is not None:
        return _future(existing)
    request_id = service.futures.create("SaveWeights")
    if not body.overwrite and body.path and service.checkpoint(run.model_id, f"weights/{body.path}"):
        error = UserError(f"checkpoint weights/{body.path} of {run.model_id} exists; pass overwrite=True to replace it")
        return _future(service.press.submit(failing_op(run.model_id, body.seq_id, request_id, error)))
    return _future(service.press.submit(_named_save_op(service, run, body, "weights", request_id)))


@router.post("/save_weights_for_sampler")
async def save_weights_for_sampler(body: wire.SaveWeightsForSampler, service: ServiceDep, owner: OwnerDep) -> dict:
    run, existing = _next_op(service, owner, body.model_id, body.seq_id)
    if existing is not None:
        return _future(existing)
    request_id = service.futures.create("SaveWeightsForSampler")
    if body.path is None and body.sampling_session_seq_id is None:
        error = UserError("save_weights_for_sampler needs a path (a name) or a sampling_session_seq_id")
        op = failing_op(run.model_id, body.seq_id, request_id, error)
    elif body.path is None:
        op = _ephemeral_sampler_save(service, run, body, request_id)
    else:
        # a named sampler checkpoint is replaced when saved again (the SDK offers no overwrite flag)
        op = _named_save_op(service, run, body, "sampler_weights", request_id)
    return _future(service.press.submit(op))


def _named_save_op(
    service: Service, run: TrainingRunRow, body: wire.SaveWeights | wire.SaveWeightsForSampler, kind: str, request_id: str
) -> TrainOp:
    """Save under `body.path` as a `kind` checkpoint, listed only once its files are complete."""
    try:
        name = check_checkpoint_name(body.path)
    except UserError as exc:
        return failing_op(run.model_id, body.seq_id, request_id, exc)
    folder = str(service.checkpoint_folder(run.model_id, kind, name))
    save = SaveState if kind == "weights" else SaveSamplerWeights

    def list_checkpoint(result: SaveResult) -> Payload:
        row = _checkpoint_row(run.model_id, kind, name, result, body.ttl_seconds, body.user_metadata)
        # the row switching to the new version is what replaces the checkpoint; the old version
        # is complete until then
        service.metadata.add_checkpoint(row)
        checkpoint_folders.retire_superseded(Path(result.folder))
        return Payload.json({"path": row.tinker_path})

    return TrainOp(run.model_id, body.seq_id, request_id, save(run.model_id, folder), finish=list_checkpoint)


def _ephemeral_sampler_save(service: Service, run: TrainingRunRow, body: wire.SaveWeightsForSampler, request_id: str) -> TrainOp:
    sampling_session_id = f"{run.session_id}:sample:{body.sampling_session_seq_id}"
    folder = checkpoint_folders.ephemeral_folder(service.data_dir, run.model_id, body.seq_id)

    def open_sampling_session(result: SaveResult) -> Payload:
        # unnamed sampler weights pile up in RL loops that save every step; only a model's most
        # recent ones are kept on disk
        checkpoint_folders.prune_ephemeral(service.data_dir, run.model_id, KEPT_EPHEMERAL_SAVES)
        service.metadata.add_sampling_session(
            SamplingSessionRow(sampling_session_id, run.session_id, run.owner, run.base_model, None, result.folder)
        )
        return Payload.json({"sampling_session_id": sampling_session_id, "type": "save_weights_for_sampler"})

    command = SaveSamplerWeights(run.model_id, str(folder))
    return TrainOp(run.model_id, body.seq_id, request_id, command, finish=open_sampling_session)


@router.post("/load_weights")
async def load_weights(body: wire.LoadWeights, service: ServiceDep, owner: OwnerDep) -> dict:
    if body.model_id is None:
        return await _create_from_state(body, service, owner)
    if body.seq_id is None:
        raise UserError("load_weights on an existing model needs seq_id")
    run, existing = _next_op(service, owner, body.model_id, body.seq_id)
    if existing is not None:
        return _future(existing)
    request_id = service.futures.create("LoadWeights")
    try:
        folder = _training_checkpoint(service, owner, body.path)
        base_model, spec = checkpoints.read_training_meta(folder)
        if base_model != run.base_model or spec.rank != run.lora["rank"]:
            raise UserError(
                f"{body.path} is a rank-{spec.rank} adapter of {base_model}; "
                f"{run.model_id} is a rank-{run.lora['rank']} adapter of {run.base_model}"
            )
    except UserError as exc:
        return _future(service.press.submit(failing_op(run.model_id, body.seq_id, request_id, exc)))

    command = LoadState(run.model_id, str(folder), body.optimizer)
    answer = {"path": body.path, "model_id": run.model_id, "type": "load_weights"}
    return _future(service.press.submit(_answering_op(run.model_id, body.seq_id, request_id, command, answer)))


async def _create_from_state(body: wire.LoadWeights, service: Service, owner: str) -> dict:
    if body.session_id is None or body.model_seq_id is None:
        raise UserError("load_weights needs either model_id and seq_id, or session_id and model_seq_id")
    service.owned_session(owner, body.session_id)
    model_id = f"{body.session_id}:train:{body.model_seq_id}"
    if (existing := service.press.request_id(model_id, 0)) is not None:
        return _future(existing, model_id)
    folder = _training_checkpoint(service, owner, body.path)
    base_model, spec = checkpoints.read_training_meta(folder)
    await service.base_model(base_model)
    _record_run(service, owner, body.session_id, model_id, base_model, spec, body.user_metadata)
    request_id = service.futures.create("LoadWeights")
    command = CreateModelFromState(model_id, str(folder), body.optimizer)
    op = _answering_op(model_id, 0, request_id, command, {"path": body.path, "model_id": model_id, "type": "load_weights"})
    return _future(service.press.open_model(model_id, op), model_id)


def _answering_op(model_id: str, seq_id: int, request_id: str, command: Command, answer: dict) -> TrainOp:
    """An operation whose future gets `answer` once its command has run."""
    payload = Payload.json(answer)
    return TrainOp(model_id, seq_id, request_id, command, finish=lambda result: payload)


def _training_checkpoint(service: Service, owner: str, path: str) -> Path:
    row = service.readable_checkpoint(owner, path)
    if row.kind != "weights":
        raise UserError(f"{path} is a sampler checkpoint; load_weights needs a training checkpoint (…/weights/…)")
    return Path(row.folder)


def _record_run(service: Service, owner: str, session_id: str, model_id: str, base_model: str, spec: LoraSpec, user_metadata) -> None:
    stamp = now_iso()
    service.metadata.add_training_run(
        TrainingRunRow(
            model_id=model_id, session_id=session_id, owner=owner, base_model=base_model,
            lora=spec.__dict__.copy(), created=stamp, last_request=stamp,
            user_metadata={str(k): str(v) for k, v in (user_metadata or {}).items()},
        )
    )


def _checkpoint_row(
    model_id: str, kind: str, name: str, saved: SaveResult, ttl_seconds: int | None, user_metadata
) -> CheckpointRow:
    expires = None
    if ttl_seconds:
        expires = (datetime.now(UTC) + timedelta(seconds=ttl_seconds)).isoformat()
    return CheckpointRow(
        model_id=model_id, checkpoint_id=f"{kind}/{name}", kind=kind, folder=saved.folder, created=now_iso(),
        size_bytes=saved.size_bytes, public=False, expires_at=expires,
        user_metadata={str(k): str(v) for k, v in (user_metadata or {}).items()},
    )


def _next_op(service: Service, owner: str, model_id: str, seq_id: int) -> tuple[TrainingRunRow, str | None]:
    """The live run an operation is for, and the request id it already has if it was re-sent."""
    run = service.live_run(owner, model_id)
    if seq_id < 1:
        raise UserError(f"seq_id must be >= 1 (seq 0 is the model's creation), got {seq_id}")
    return run, service.press.request_id(run.model_id, seq_id)

