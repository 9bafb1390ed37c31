"""Ray actors: how an adapter gets from a trainer actor to a sampler actor, and what an actor costs.

On a local Ray runtime, with a LoRA adapter (rank 32 on attention, MLP and lm_head) trained on the
103M-parameter Qwen3 of bench/models.py (or the tiny model with `--tiny`):

  (a) adapter handoff trainer actor → engine actor, in the same run:
      filesystem: the trainer writes the PEFT sampler checkpoint (what anvil does), the engine
      actor reads it back as tensors; object store: the trainer puts the adapter's tensors in
      Ray's object store, the engine actor gets them;
  (b) forward_backward + optim_step of 8 × 256 tokens: in a trainer actor (through Ray) against a
      TrainerWorker in this process, alternating, for tokens per second per trainer actor;
  (c) an empty actor call's round trip, and the adapter's memory (weights, gradients, AdamW).

    python -m bench.ray_handoff [--repeats 5] [--tiny]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch

from anvil.base_models import BaseModelRegistry
from anvil.peft_format import read_peft_adapter
from anvil.ray_cluster import ClusterSettings, connect
from anvil.tiny_qwen3 import TINY_QWEN3_NAME
from anvil.types import AdamStep, ForwardBackwardWork, LoraSpec, TrainDatum
from bench.models import build_qwen3_103m
from trainer.worker import TrainerWorker

RANK = 32
ROWS, LENGTH = 8, 256


class BenchTrainer:
    def __init__(self, registry: BaseModelRegistry, base_model: str):
        self.worker = TrainerWorker(registry)
        self.worker.create_model("m", base_model, LoraSpec(rank=RANK, seed=0))
        self.vocab = self.worker.models["m"].host.vocab_size

    def save(self, folder: str) -> str:
        return str(self.worker.save_sampler_weights("m", Path(folder)))

    def tensors(self) -> dict:
        adapter = self.worker.models["m"].adapter
        return {path: (w.lora_A.detach().numpy().copy(), w.lora_B.detach().numpy().copy()) for path, w in adapter.weights.items()}

    def step(self) -> float:
        return _step(self.worker, self.vocab)

    def adapter_parameters(self) -> int:
        adapter = self.worker.models["m"].adapter
        return sum(w.lora_A.numel() + w.lora_B.numel() for w in adapter.weights.values())

    def noop(self) -> None:
        return None


class BenchEngine:
    def read(self, folder: str) -> int:
        _, weights = read_peft_adapter(Path(folder))
        return sum(a.numel() + b.numel() for a, b in weights.values())

    def take(self, tensors: dict) -> int:
        weights = {path: (torch.from_numpy(a), torch.from_numpy(b)) for path, (a, b) in tensors.items()}
        return sum(a.numel() + b.numel() for a, b in weights.values())


def _step(worker: TrainerWorker, vocab: int) -> float:
    rng = np.random.default_rng(0)
    data = []
    for _ in range(ROWS):
        tokens = rng.integers(0, vocab, LENGTH + 1)
        data.append(TrainDatum(tokens[:-1], {"target_tokens": tokens[1:], "weights": np.ones(LENGTH, np.float32)}))
    start = time.perf_counter()
    worker.forward_backward([("m", ForwardBackwardWork(data, "cross_entropy", {}, False))])
    worker.optim_step("m", AdamStep())
    return time.perf_counter() - start


def _median_s(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="the built-in tiny model instead of the 103M one")
    args = parser.parse_args()
    cache = Path(os.environ.get("ANVIL_BENCH_DIR", Path(tempfile.gettempdir()) / "anvil-bench"))
    registry = BaseModelRegistry(cache / "models")
    if args.tiny:
        base_model = TINY_QWEN3_NAME
    else:
        base_model = str(build_qwen3_103m(cache / "qwen3-103m", cache / "models"))
    connect(ClusterSettings())
    trainer = ray.remote(BenchTrainer).options(num_cpus=0).remote(registry, base_model)
    engine = ray.remote(BenchEngine).options(num_cpus=0).remote()
    parameters = ray.get(trainer.adapter_parameters.remote())
    folder = tempfile.mkdtemp(prefix="handoff-", dir=cache)

    def through_files() -> None:
        assert ray.get(engine.read.remote(trainer.save.remote(folder))) == parameters

    def through_object_store() -> None:
        assert ray.get(engine.take.remote(trainer.tensors.remote())) == parameters

    through_files(), through_object_store()  # warm both paths
    files_s, store_s = [], []
    for _ in range(args.repeats):
        files_s.append(_median_s(through_files, 1))
        store_s.append(_median_s(through_object_store, 1))
    noop_s = _median_s(lambda: ray.get(trainer.noop.remote()), 50)

    local = TrainerWorker(registry)
    local.create_model("m", base_model, LoraSpec(rank=RANK, seed=0))
    vocab = local.models["m"].host.vocab_size
    ray.get(trainer.step.remote()), _step(local, vocab)  # warm-up
    actor_s, local_s = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ray.get(trainer.step.remote())
        actor_s.append(time.perf_counter() - start)
        local_s.append(_step(local, vocab))
    tokens = ROWS * LENGTH
    name = "tiny-qwen3" if args.tiny else "qwen3-103m"
    adapter_mib = parameters * 4 / 2**20
    print(f"{name}: LoRA rank {RANK} on every target, {parameters:,} adapter parameters, median of {args.repeats}")
    print(f"  (a) handoff through the filesystem     {statistics.median(files_s) * 1000:8.1f} ms")
    print(f"  (a) handoff through Ray's object store {statistics.median(store_s) * 1000:8.1f} ms")
    print(f"  (a) object store / filesystem          {statistics.median(store_s) / statistics.median(files_s):8.2f}x")
    print(f"  (b) trainer actor                      {tokens / statistics.median(actor_s):8.0f} tokens/s")
    print(f"  (b) trainer in this process            {tokens / statistics.median(local_s):8.0f} tokens/s")
    print(f"  (b) actor / in-process                 {statistics.median(local_s) / statistics.median(actor_s):8.2f}x")
    print(f"  (c) empty actor call                   {noop_s * 1e6:8.0f} us")
    print(f"  (c) adapter memory: {adapter_mib:.1f} MiB weights, {4 * adapter_mib:.1f} MiB with gradients and AdamW moments")
    ray.shutdown()


if __name__ == "__main__":
    main()
