"""A fixed series of trainer commands, run by tests/trainer/test_sharded_worker.py on an unsharded
worker in the test's process and on a worker sharded over separate processes (`python
sharded_script.py RANK SIZE INIT_METHOD DATA_DIR OUT`, one process per rank)."""

import pickle
import sys
from pathlib import Path

import numpy as np
import torch

from anvil.base_models import BaseModelRegistry
from anvil.types import AdamStep, ForwardBackwardWork, LoraSpec, TrainDatum
from trainer.commands import (
    CreateModel,
    CreateModelFromState,
    ForwardBackward,
    OptimStep,
    SaveSamplerWeights,
    SaveState,
)
from trainer.pool import InProcessTrainerPool
from trainer.worker import TrainerWorker

TINY = "anvil/tiny-qwen3"
STEP = AdamStep(learning_rate=1e-2)
MODELS = {
    "full": LoraSpec(rank=4, seed=1),
    "head": LoraSpec(rank=4, seed=2, train_attn=False, train_mlp=False),  # an lm_head-only adapter
    "attn": LoraSpec(rank=8, seed=3, train_mlp=False, train_unembed=False),
    "unseeded": LoraSpec(rank=4),  # its replicas must start equal all the same
}


def fb(model_id: str, length: int, shift: int, loss_fn: str = "cross_entropy", forward_only: bool = False) -> ForwardBackward:
    tokens = (np.arange(length + 1, dtype=np.int64) * 7 + shift) % 250 + 3
    inputs = {"target_tokens": tokens[1:], "weights": np.linspace(0.5, 1.5, length).astype(np.float32)}
    if loss_fn == "importance_sampling":
        inputs["logprobs"] = np.full(length, -3.0, np.float32)
        inputs["advantages"] = np.linspace(-1, 1, length).astype(np.float32)
    return ForwardBackward(model_id, ForwardBackwardWork([TrainDatum(tokens[:-1], inputs)], loss_fn, {}, forward_only))


def rounds() -> list[list[ForwardBackward]]:
    return [
        # four gradient requests (two of one model) and a forward-only one: a micro-batch each way
        [fb("full", 12, 0), fb("head", 20, 1), fb("attn", 7, 2, "importance_sampling"), fb("full", 9, 3),
         fb("unseeded", 5, 4, forward_only=True)],
        # one request alone: the other rank's share is empty, and it runs the passes all the same
        [fb("head", 16, 5)],
        [fb("attn", 11, 6), fb("unseeded", 13, 7), fb("full", 6, 8, "importance_sampling")],
    ]


def run(pool, data_dir: Path) -> dict:
    """The answers of every command, and the models' LoRA weights at the end."""
    out: dict = {"created": [], "rounds": [], "steps": []}
    for model_id, spec in MODELS.items():
        out["created"].append(pool.run(CreateModel(model_id, TINY, spec)))
    for commands in rounds():
        out["rounds"].append(pool.forward_backward(commands))
        trained = sorted({c.model_id for c in commands if not c.work.forward_only})
        out["steps"].append({m: pool.run(OptimStep(m, STEP)) for m in trained})
    # an unknown loss in one rank's share fails the whole batch on every rank, and nothing hangs
    out["bad_round"] = pool.forward_backward([fb("full", 8, 9), fb("attn", 30, 10, "no_such_loss")])
    out["after_bad"] = pool.forward_backward([fb("full", 8, 9, forward_only=True)])
    out["saved"] = pool.run(SaveState("full", str(data_dir / "full-state")))
    out["sampler"] = pool.run(SaveSamplerWeights("head", str(data_dir / "head-sampler")))
    out["restored"] = pool.run(CreateModelFromState("copy", out["saved"].folder, True))
    out["copy_round"] = pool.forward_backward([fb("copy", 10, 11, forward_only=True), fb("full", 10, 11, forward_only=True)])
    out["weights"] = {
        model_id: {path: (w.lora_A.detach().clone(), w.lora_B.detach().clone()) for path, w in model.adapter.weights.items()}
        for model_id, model in pool.worker.models.items()
    }
    return out


def main(rank: int, size: int, init_method: str, data_dir: Path, out: Path) -> None:
    from trainer.sharding import ShardGroup

    group = ShardGroup.join(init_method, rank, size)
    worker = TrainerWorker(BaseModelRegistry(data_dir / "models"), "fp32", group)
    result = run(InProcessTrainerPool(worker), data_dir)
    host = worker.hosts[TINY]
    result["layer_elements"] = {
        "local": sum(p.to_local().numel() for p in host.model.model.layers.parameters()),
        "whole": sum(p.numel() for p in host.model.model.layers.parameters()),
    }
    out.write_bytes(pickle.dumps(result))
    group.leave()


if __name__ == "__main__":
    torch.manual_seed(0)
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]))
