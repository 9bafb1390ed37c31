"""Training endpoints: create/load models, forward_backward, optim_step, and saving weights.

Every operation on a model is queued on the press under its seq_id and answered with a future.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from anvil import checkpoint_folders
from anvil.types import LoraSpec
from gateway import proto_codec, wire
from gateway.deps import OwnerDep, ServiceDep
from gateway.errors import UserError
from gateway.futures import Payload
from gateway.store import CheckpointRow, SamplingSessionRow, TrainingRunRow, now_iso
from gateway.press import TrainOp
from gateway.quotas import check_model_count
from gateway.request_body import read_bounded_body
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
# a training operation's body, read as JSON first: see _next_op
SeqBody = Annotated[dict[str, Any], Body()]


def _future(request_id: str, model_id: str | None = None) -> dict:
    return {"request_id": request_id, **({"model_id": model_id} if model_id else {})}


@router.post("/create_model")
async def create_model(body: wire.CreateModel, service: ServiceDep, owner: OwnerDep) -> dict:
    await service.open_session(owner, body.session_id)
    model_id = f"{body.session_id}:train:{body.model_seq_id}"
    if (existing := service.press.request_id(model_id, 0)) is not None:
        return _future(existing, model_id)
    lora = body.lora_config or wire.LoraConfigWire()
    if not (lora.train_attn or lora.train_mlp or lora.train_unembed):
        raise UserError("lora_config: at least one of train_attn, train_mlp, train_unembed must be true")
    optimizer = (body.optimizer_config or {}).get("type", "adamw")
    if optimizer != "adamw":
        raise UserError(f"optimizer {optimizer!r} is not supported; anvil trains with adamw")
    check_model_count(service.press.models_of(owner), service.settings.limits)
    base = await service.base_model(body.base_model)
    spec = LoraSpec(lora.rank, lora.seed, lora.train_attn, lora.train_mlp, lora.train_unembed)
    await _record_run(service, owner, body.session_id, model_id, base.name, spec, body.user_metadata)
    request_id = service.futures.create("CreateModel", owner)
    command = CreateModel(model_id, base.name, spec)
    op = _answering_op(model_id, 0, request_id, command, {"model_id": model_id, "type": "create_model"})
    return _future(service.press.open_model(model_id, op, owner), model_id)


@router.post("/unload_model")
async def unload_model(body: wire.ModelRef, service: ServiceDep, owner: OwnerDep) -> dict:
    """Free a model's adapter and optimizer state now (the SDK defines the request but never
    sends it; ending the session does the same for all its models). Queued work on the model fails;
    its checkpoints stay."""
    run = await service.live_run(owner, body.model_id)
    request_id = service.futures.create("UnloadModel", owner)
    service.press.unload(run.model_id, request_id)
    return _future(request_id, run.model_id)


@router.post("/get_info")
async def get_info(body: wire.ModelRef, service: ServiceDep, owner: OwnerDep) -> dict:
    run = await service.owned_run(owner, body.model_id)
    base = await service.base_model(run.base_model)
    return {
        "type": "get_info",
        "model_id": run.model_id,
        "model_data": {"arch": "lora", "model_name": run.base_model, "tokenizer_id": service.tokenizer_id(base)},
        "is_lora": True,
        "lora_rank": run.lora["rank"],
        "model_name": run.base_model,
    }


@router.post("/forward_backward")
async def forward_backward(request: Request, service: ServiceDep, owner: OwnerDep) -> dict:
    limits = service.settings.limits
    body = await read_bounded_body(request, limits.max_body_bytes)
    # decompressing and parsing a large body takes a while: off the event loop, so heartbeats
    # and other users' requests are answered meanwhile
    message = await asyncio.to_thread(
        proto_codec.parse_forward_backward, body, request.headers.get("content-encoding"), limits.max_body_bytes
    )
    run, existing = await _next_seq_op(service, owner, message.model_id, message.seq_id)
    if existing is not None:
        return _future(existing)
    base = await service.base_model(run.base_model)
    request_id = service.futures.create("ForwardBackward", owner)
    await service.store.touch_training_run(run.model_id)
    op = await asyncio.to_thread(forward_backward_op, message, base.vocab_size, request_id, base.max_context, limits)
    return _future(service.press.submit(op))


@router.post("/optim_step")
async def optim_step(raw: SeqBody, service: ServiceDep, owner: OwnerDep) -> dict:
    run, seq_id, existing = await _next_op(service, owner, raw)
    if existing is not None:
        return _future(existing)
    request_id = service.futures.create("OptimStep", owner)
    try:
        body = wire.parse(wire.OptimStep, raw)
    except UserError as exc:
        return _future(service.press.submit(failing_op(run.model_id, seq_id, request_id, exc)))
    return _future(service.press.submit(optim_step_op(body, request_id)))


@router.post("/save_weights")
async def save_weights(raw: SeqBody, service: ServiceDep, owner: OwnerDep) -> dict:
    run, seq_id, existing = await _next_op(service, owner, raw)
    if existing is not None:
        return _future(existing)
    request_id = service.futures.create("SaveWeights", owner)
    try:
        body = wire.parse(wire.SaveWeights, raw)
    except UserError as exc:
        return _future(service.press.submit(failing_op(run.model_id, seq_id, request_id, exc)))
    if not body.overwrite and body.path and await service.checkpoint(run.model_id, f"weights/{body.path}"):
        error = UserError(f"checkpoint weights/{body.path} of {run.model_id} exists; pass overwrite=True to replace it")
        return _future(service.press.submit(failing_op(run.model_id, body.seq_id, request_id, error)))
    return _future(service.press.submit(_named_save_op(service, run, body, "weights", request_id)))


@router.post("/save_weights_for_sampler")
async def save_weights_for_sampler(raw: SeqBody, service: ServiceDep, owner: OwnerDep) -> dict:
    run, seq_id, existing = await _next_op(service, owner, raw)
    if existing is not None:
        return _future(existing)
    request_id = service.futures.create("SaveWeightsForSampler", owner)
    try:
        body = wire.parse(wire.SaveWeightsForSampler, raw)
    except UserError as exc:
        return _future(service.press.submit(failing_op(run.model_id, seq_id, request_id, exc)))
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
        # is complete until then (on the press thread, which may wait for the database)
        service.store.sync.add_checkpoint(row)
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
        service.store.sync.add_sampling_session(
            SamplingSessionRow(sampling_session_id, run.session_id, run.owner, run.base_model, None, result.folder)
        )
        return Payload.json({"sampling_session_id": sampling_session_id, "type": "save_weights_for_sampler"})

    command = SaveSamplerWeights(run.model_id, str(folder))
    return TrainOp(run.model_id, body.seq_id, request_id, command, finish=open_sampling_session)


@router.post("/load_weights")
async def load_weights(raw: Annotated[dict[str, Any], Body()], service: ServiceDep, owner: OwnerDep) -> dict:
    if raw.get("model_id") is None:
        return await _create_from_state(wire.parse(wire.LoadWeights, raw), service, owner)
    if raw.get("seq_id") is None:
        raise UserError("load_weights on an existing model needs seq_id", field="seq_id")
    run, seq_id, existing = await _next_op(service, owner, raw)
    if existing is not None:
        return _future(existing)
    request_id = service.futures.create("LoadWeights", owner)
    try:
        body = wire.parse(wire.LoadWeights, raw)
        folder = await _training_checkpoint(service, owner, body.path)
        _check_fits(body.path, *checkpoints.read_training_meta(folder), run)
    except UserError as exc:
        return _future(service.press.submit(failing_op(run.model_id, seq_id, request_id, exc)))

    command = LoadState(run.model_id, str(folder), body.optimizer)
    answer = {"path": body.path, "model_id": run.model_id, "type": "load_weights"}
    return _future(service.press.submit(_answering_op(run.model_id, body.seq_id, request_id, command, answer)))


async def _create_from_state(body: wire.LoadWeights, service: Service, owner: str) -> dict:
    if body.session_id is None or body.model_seq_id is None:
        raise UserError(
            "load_weights needs either model_id and seq_id, or session_id and model_seq_id", field="session_id"
        )
    await service.open_session(owner, body.session_id)
    model_id = f"{body.session_id}:train:{body.model_seq_id}"
    if (existing := service.press.request_id(model_id, 0)) is not None:
        return _future(existing, model_id)
    check_model_count(service.press.models_of(owner), service.settings.limits)
    folder = await _training_checkpoint(service, owner, body.path)
    base_model, spec = checkpoints.read_training_meta(folder)
    if body.base_model is not None and body.base_model != base_model:
        raise UserError(
            f"{body.path} was trained on {base_model!r}; loading it onto base_model {body.base_model!r} is not supported",
            field="base_model",
        )
    await service.base_model(base_model)
    await _record_run(service, owner, body.session_id, model_id, base_model, spec, body.user_metadata)
    request_id = service.futures.create("LoadWeights", owner)
    command = CreateModelFromState(model_id, str(folder), body.optimizer)
    op = _answering_op(model_id, 0, request_id, command, {"path": body.path, "model_id": model_id, "type": "load_weights"})
    return _future(service.press.open_model(model_id, op, owner), model_id)


def _check_fits(path: str, base_model: str, spec: LoraSpec, run: TrainingRunRow) -> None:
    """A checkpoint loads into a model of the same base model and the same LoRA layout."""
    if base_model != run.base_model:
        raise UserError(f"{path} is an adapter of {base_model}; {run.model_id} is one of {run.base_model}", field="path")
    differing = [
        f"{name}={getattr(spec, name)} (the model has {run.lora[name]})"
        for name in ("rank", "train_attn", "train_mlp", "train_unembed")
        if getattr(spec, name) != run.lora[name]
    ]
    if differing:
        raise UserError(f"{path} does not fit {run.model_id}: the checkpoint has " + ", ".join(differing), field="path")


def _answering_op(model_id: str, seq_id: int, request_id: str, command: Command, answer: dict) -> TrainOp:
    """An operation whose future gets `answer` once its command has run."""
    payload = Payload.json(answer)
    return TrainOp(model_id, seq_id, request_id, command, finish=lambda result: payload)


async def _training_checkpoint(service: Service, owner: str, path: str) -> Path:
    row = await service.readable_checkpoint(owner, path)
    if row.kind != "weights":
        raise UserError(f"{path} is a sampler checkpoint; load_weights needs a training checkpoint (…/weights/…)")
    return Path(row.folder)


async def _record_run(
    service: Service, owner: str, session_id: str, model_id: str, base_model: str, spec: LoraSpec, user_metadata
) -> None:
    stamp = now_iso()
    await service.store.add_training_run(
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
        expires = (datetime.now(UTC) + timedelta(seconds=ttl_seconds)).isoformat(timespec="microseconds")
    return CheckpointRow(
        model_id=model_id, checkpoint_id=f"{kind}/{name}", kind=kind, folder=saved.folder, created=now_iso(),
        size_bytes=saved.size_bytes, public=False, expires_at=expires,
        user_metadata={str(k): str(v) for k, v in (user_metadata or {}).items()},
    )


async def _next_op(service: Service, owner: str, raw: dict[str, Any]) -> tuple[TrainingRunRow, int, str | None]:
    """The live run an operation is for, its seq_id, and the request id it already has if it was re-sent.

    Only model_id and seq_id are checked here: once they are known, any other mistake in the
    request fails its future in its turn (gateway/train_requests.py), and the model's later
    requests are not held up by a missing seq_id."""
    ref = wire.parse(wire.SeqRef, raw)
    run, existing = await _next_seq_op(service, owner, ref.model_id, ref.seq_id)
    return run, ref.seq_id, existing


async def _next_seq_op(service: Service, owner: str, model_id: str, seq_id: int) -> tuple[TrainingRunRow, str | None]:
    run = await service.live_run(owner, model_id)
    if seq_id < 1:
        raise UserError(f"seq_id must be >= 1 (seq 0 is the model's creation), got {seq_id}", field="seq_id")
    return run, service.press.request_id(run.model_id, seq_id)

