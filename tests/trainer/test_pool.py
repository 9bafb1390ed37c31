"""The in-process pool runs every command on the worker and answers with data, failures included."""

import numpy as np

from anvil.types import AdamStep, ForwardBackwardResult, ForwardBackwardWork, LoraSpec, TrainDatum
from trainer.commands import (
    CommandFailure,
    CreateModel,
    CreateModelFromState,
    CreateResult,
    ForwardBackward,
    LoadResult,
    LoadState,
    OptimStep,
    OptimStepResult,
    SaveResult,
    SaveSamplerWeights,
    SaveState,
    Unload,
    UnloadResult,
)
from trainer.pool import InProcessTrainerPool
from trainer.worker import TrainerWorker

TINY = "anvil/tiny-qwen3"


def _forward_backward(model_id: str, forward_only: bool = False) -> ForwardBackward:
    tokens = np.arange(10, 22, dtype=np.int64)
    datum = TrainDatum(tokens[:-1], {"target_tokens": tokens[1:], "weights": np.ones(11, np.float32)})
    return ForwardBackward(model_id, ForwardBackwardWork([datum], "cross_entropy", {}, forward_only))


def _logprobs(pool: InProcessTrainerPool, model_id: str) -> np.ndarray:
    (result,) = pool.forward_backward([_forward_backward(model_id, forward_only=True)])
    return result.logprobs[0]


def test_every_command_runs_and_answers_with_its_result(registry, tmp_path):
    pool = InProcessTrainerPool(TrainerWorker(registry))
    assert pool.run(CreateModel("m", TINY, LoraSpec(rank=4, seed=1))) == CreateResult("m")
    (trained,) = pool.forward_backward([_forward_backward("m")])
    assert isinstance(trained, ForwardBackwardResult) and trained.metrics["loss:sum"] > 0
    step = pool.run(OptimStep("m", AdamStep(learning_rate=1e-2)))
    assert isinstance(step, OptimStepResult)

    saved = pool.run(SaveState("m", str(tmp_path / "state")))
    state = tmp_path / "state" / "v000001"  # the first version of the checkpoint folder
    assert saved == SaveResult(str(state), sum(f.stat().st_size for f in state.iterdir()))
    assert saved.size_bytes > 0
    saved_sampler = pool.run(SaveSamplerWeights("m", str(tmp_path / "sampler")))
    sampler = tmp_path / "sampler" / "v000001"
    assert saved_sampler == SaveResult(str(sampler), sum(f.stat().st_size for f in sampler.iterdir()))
    assert (sampler / "adapter_model.safetensors").is_file()

    expected = _logprobs(pool, "m")
    assert pool.run(CreateModelFromState("copy", str(state), with_optimizer=True)) == CreateResult("copy")
    np.testing.assert_array_equal(_logprobs(pool, "copy"), expected)
    pool.forward_backward([_forward_backward("m")])
    pool.run(OptimStep("m", AdamStep(learning_rate=1e-2)))
    assert np.abs(_logprobs(pool, "m") - expected).max() > 1e-4
    assert pool.run(LoadState("m", str(state), with_optimizer=False)) == LoadResult("m")
    np.testing.assert_array_equal(_logprobs(pool, "m"), expected)

    assert pool.run(Unload("copy")) == UnloadResult("copy")
    assert pool.run(Unload("copy")) == UnloadResult("copy"), "unloading twice is harmless"
    (gone,) = pool.forward_backward([_forward_backward("copy", forward_only=True)])
    assert gone == CommandFailure("server", "KeyError: 'copy'")


def test_a_checkpoint_with_other_lora_targets_is_a_user_failure(registry, tmp_path, caplog):
    pool = InProcessTrainerPool(TrainerWorker(registry))
    pool.run(CreateModel("attn-only", TINY, LoraSpec(rank=4, seed=1, train_mlp=False)))
    pool.run(CreateModel("everything", TINY, LoraSpec(rank=4, seed=2)))
    saved = pool.run(SaveState("attn-only", str(tmp_path / "attn-only")))
    failure = pool.run(LoadState("everything", saved.folder, with_optimizer=True))
    assert isinstance(failure, CommandFailure) and failure.category == "user"
    assert "checkpoint targets different layers than this model" in failure.message
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "a user's mistake logs no traceback"


def test_a_failing_batch_fails_every_command_of_it(registry):
    pool = InProcessTrainerPool(TrainerWorker(registry))
    pool.run(CreateModel("m", TINY, LoraSpec(rank=4, seed=1)))
    results = pool.forward_backward([_forward_backward("m"), _forward_backward("never-created")])
    assert results == [CommandFailure("server", "KeyError: 'never-created'")] * 2


def test_a_barrier_on_an_unknown_model_is_a_server_failure(registry):
    pool = InProcessTrainerPool(TrainerWorker(registry))
    assert pool.run(OptimStep("never-created", AdamStep())) == CommandFailure("server", "KeyError: 'never-created'")
