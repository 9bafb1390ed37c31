"""Turns training requests into press operations, checking every input before anything is queued.

A request that fails validation still takes its seq_id slot, as an operation that fails its future
with a user error when its turn comes, so later requests of the model are never held up by a gap.
"""

import numpy as np
from tinker.proto import tinker_public_pb2 as pb

from anvil.types import AdamStep, ForwardBackwardWork, TrainDatum
from gateway import proto_codec, wire
from gateway.errors import UserError
from gateway.futures import Payload
from gateway.press import TrainOp
from gateway.quotas import Limits, check_train_lengths
from losses.registry import get_loss
from losses.validate import validate_loss_request
from trainer.commands import CommandFailure, ForwardBackward, OptimStep, OptimStepResult


def failing_op(model_id: str, seq_id: int, request_id: str, error: UserError) -> TrainOp:
    return TrainOp(model_id, seq_id, request_id, failure=CommandFailure("user", error.message))


def forward_backward_work(
    message: pb.ForwardBackwardRequest, vocab_size: int, max_context: int, limits: Limits
) -> ForwardBackwardWork:
    if not message.data:
        raise UserError("forward_backward request has no data")
    spec = get_loss(message.loss_fn or "cross_entropy")
    # lengths first, from the chunk sizes alone: an oversized request is refused before any
    # of it is decoded
    check_train_lengths([proto_codec.datum_length(d) for d in message.data], max_context, limits)
    data = []
    for i, datum in enumerate(message.data):
        where = f"data[{i}]"
        tokens = proto_codec.datum_tokens(datum, where)
        _check_token_ids(tokens, vocab_size, f"{where}.model_input")
        inputs = {
            name: proto_codec.tensor_to_numpy(tensor, f"{where}.loss_fn_inputs[{name!r}]", len(tokens))
            for name, tensor in datum.loss_fn_inputs.items()
        }
        data.append(TrainDatum(tokens=tokens, inputs=inputs))
    config = validate_loss_request(
        spec, [d.inputs for d in data], [len(d.tokens) for d in data], proto_codec.loss_config(message)
    )
    for i, datum in enumerate(data):
        _check_token_ids(datum.inputs["target_tokens"], vocab_size, f"data[{i}].loss_fn_inputs['target_tokens']")
    return ForwardBackwardWork(data=data, loss_fn=spec.name, loss_config=config, forward_only=message.forward_only)


def forward_backward_op(
    message: pb.ForwardBackwardRequest, vocab_size: int, request_id: str, max_context: int, limits: Limits
) -> TrainOp:
    try:
        work = forward_backward_work(message, vocab_size, max_context, limits)
    except UserError as exc:  # LossInputError among them
        return failing_op(message.model_id, message.seq_id, request_id, exc)
    return TrainOp(
        message.model_id,
        message.seq_id,
        request_id,
        ForwardBackward(message.model_id, work),
        finish=lambda result: Payload.proto(proto_codec.forward_backward_output(result)),
    )


def adam_step(body: wire.OptimStep) -> AdamStep:
    if body.adam_params is None:
        kind = (body.optimizer_params or {}).get("type", "unknown")
        raise UserError(f"optimizer {kind!r} is not supported; anvil trains with AdamW (adam_params)", field="adam_params")
    p = body.adam_params  # each value finite and in range (gateway/wire.py)
    if p.learning_rate * p.weight_decay > 1:
        raise UserError(
            f"adam_params.weight_decay × learning_rate must be <= 1 (got {p.weight_decay} × {p.learning_rate}): "
            "AdamW scales the weights by 1 - learning_rate × weight_decay each step",
            field="adam_params.weight_decay",
        )
    return AdamStep(**p.model_dump())


def optim_step_op(body: wire.OptimStep, request_id: str) -> TrainOp:
    try:
        step = adam_step(body)
    except UserError as exc:
        return failing_op(body.model_id, body.seq_id, request_id, exc)
    return TrainOp(body.model_id, body.seq_id, request_id, OptimStep(body.model_id, step), finish=_optim_step_payload)


def _optim_step_payload(result: OptimStepResult) -> Payload:
    return Payload.json({"metrics": result.metrics})


def _check_token_ids(tokens: np.ndarray, vocab_size: int, where: str) -> None:
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        bad = int(tokens.max()) if tokens.max() >= vocab_size else int(tokens.min())
        raise UserError(f"{where} has token id {bad} outside the vocabulary [0, {vocab_size})")
