"""Every command and result is plain data: it survives pickling, as it must to reach another process."""

import pickle
import typing

import numpy as np

from anvil.types import AdamStep, ForwardBackwardResult, ForwardBackwardWork, LoraSpec, TrainDatum
from trainer.commands import (
    Command,
    CommandFailure,
    CreateModel,
    CreateModelFromState,
    CreateResult,
    ForwardBackward,
    LoadResult,
    LoadState,
    OptimStep,
    OptimStepResult,
    Result,
    SaveResult,
    SaveSamplerWeights,
    SaveState,
    Unload,
    UnloadResult,
)


def _work(forward_only: bool) -> ForwardBackwardWork:
    datum = TrainDatum(
        tokens=np.arange(5, dtype=np.int64),
        inputs={"target_tokens": np.arange(1, 6, dtype=np.int64), "weights": np.full(5, 0.5, np.float32)},
    )
    return ForwardBackwardWork(data=[datum], loss_fn="ppo", loss_config={"clip_low_threshold": 0.8}, forward_only=forward_only)


COMMANDS = [
    CreateModel("s:train:0", "anvil/tiny-qwen3", LoraSpec(rank=4, seed=7, train_unembed=False)),
    CreateModelFromState("s:train:1", "/data/checkpoints/s:train:0/weights/step-3", with_optimizer=True),
    ForwardBackward("s:train:0", _work(forward_only=False)),
    ForwardBackward("s:train:0", _work(forward_only=True)),
    OptimStep("s:train:0", AdamStep(learning_rate=1e-3, weight_decay=0.01, grad_clip_norm=1.0)),
    SaveState("s:train:0", "/data/checkpoints/s:train:0/weights/step-3"),
    SaveSamplerWeights("s:train:0", "/data/ephemeral/s:train:0/seq-4"),
    LoadState("s:train:0", "/data/checkpoints/s:train:0/weights/step-3", with_optimizer=False),
    Unload("s:train:0"),
]
RESULTS = [
    CreateResult("s:train:0"),
    ForwardBackwardResult(logprobs=[np.linspace(-3, -1, 5, dtype=np.float32)], metrics={"loss:sum": 2.5}),
    OptimStepResult({"grad_norm": 0.25}),
    SaveResult("/data/checkpoints/s:train:0/weights/step-3", size_bytes=4096),
    LoadResult("s:train:0"),
    UnloadResult("s:train:0"),
    CommandFailure("user", "checkpoint targets different layers than this model"),
    CommandFailure("server", "RuntimeError: out of memory"),
]


def test_the_examples_cover_every_command_and_result():
    assert {type(c) for c in COMMANDS} == set(typing.get_args(Command))
    assert {type(r) for r in RESULTS} == {*typing.get_args(Result), CommandFailure}


def test_every_command_and_result_survives_a_pickle_round_trip():
    for value in COMMANDS + RESULTS:
        restored = pickle.loads(pickle.dumps(value))
        assert type(restored) is type(value)
        assert _plain(restored) == _plain(value), value


def _plain(value):
    """A comparable form: numpy arrays become (dtype, shape, values)."""
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.shape, value.tolist())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return (type(value).__name__, {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__})
    return value
