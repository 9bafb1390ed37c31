"""A trainer worker sharded with FSDP2 over 2 processes against the same worker in 1 process.

On the 103M-parameter Qwen3 of bench/models.py, LoRA rank 32 on every target, in the same run
(each configuration in its own processes, both using this machine's cores):
  (a) the base weights each process holds: the sharded decoder layers and what stays whole;
  (b) forward_backward + optim_step time of one round of 8 requests of 256 tokens over 4 models
      (the ranks share the requests) and of one request of 8 × 256 tokens (a request is never
      split: one rank computes, the other runs the same passes on one token);
  (c) per-process base weights of a Qwen3-8B at 1, 2, 4 and 8 shards, from its architecture's
      parameter counts (built on the meta device: nothing allocated, nothing downloaded).

    python -m bench.sharded_trainer [--repeats 5]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
LENGTH, ROWS, MODELS = 256, 8, 4


def _rounds(vocab: int):
    from anvil.types import ForwardBackwardWork, TrainDatum

    rng = np.random.default_rng(0)

    def datum():
        tokens = rng.integers(0, vocab, LENGTH + 1)
        return TrainDatum(tokens[:-1], {"target_tokens": tokens[1:], "weights": np.ones(LENGTH, np.float32)})

    spread = [(f"m{i % MODELS}", ForwardBackwardWork([datum()], "cross_entropy", {}, False)) for i in range(ROWS)]
    single = [("m0", ForwardBackwardWork([datum() for _ in range(ROWS)], "cross_entropy", {}, False))]
    return {"spread": spread, "single": single}


def measure(folder: Path, repeats: int, out: Path, rank: int = 0, size: int = 1, init_method: str = "") -> None:
    """One process of a configuration: time both rounds, record what it holds."""
    from anvil.base_models import BaseModelRegistry
    from anvil.types import AdamStep, LoraSpec
    from trainer.sharding import ShardGroup
    from trainer.worker import TrainerWorker

    group = ShardGroup.join(init_method, rank, size) if size > 1 else None
    worker = TrainerWorker(BaseModelRegistry(folder.parent, {"bench": folder}), None, group)
    for m in range(MODELS):
        worker.create_model(f"m{m}", "bench", LoraSpec(rank=32, seed=m))
    host = worker.hosts["bench"]
    rounds = _rounds(host.vocab_size)
    times: dict[str, list[float]] = {name: [] for name in rounds}
    for repeat in range(repeats + 1):  # the first round of each kind warms up
        for name, items in rounds.items():
            start = time.perf_counter()
            worker.forward_backward(items)
            for model_id in sorted({m for m, _ in items}):
                worker.optim_step(model_id, AdamStep())
            if repeat:
                times[name].append(time.perf_counter() - start)
    layers = list(host.model.model.layers.parameters())
    layer_ids = {id(p) for p in layers}
    local = sum(_local(p).numel() * p.element_size() for p in layers)
    whole_layers = sum(p.numel() * p.element_size() for p in layers)
    rest = sum(p.numel() * p.element_size() for p in host.model.parameters() if id(p) not in layer_ids)
    result = {name: statistics.median(t) for name, t in times.items()}
    result.update(layers_local=local, layers_whole=whole_layers, replicated=rest)
    if rank == 0:
        out.write_text(json.dumps(result))
    if group is not None:
        group.leave()


def _local(p: torch.Tensor) -> torch.Tensor:
    return p.to_local() if hasattr(p, "to_local") else p


def _run(folder: Path, repeats: int, size: int, threads: int) -> dict:
    from trainer.sharding import rendezvous_address

    out = Path(tempfile.mkdtemp()) / "result.json"
    init_method = rendezvous_address("127.0.0.1") if size > 1 else ""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    processes = [
        subprocess.Popen([sys.executable, "-m", "bench.sharded_trainer", "--rank", str(rank), "--size", str(size),
                          "--init-method", init_method, "--folder", str(folder), "--repeats", str(repeats),
                          "--out", str(out)], cwd=ROOT, env=env)
        for rank in range(size)
    ]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a process of the {size}-process run failed")
    return json.loads(out.read_text())


def qwen3_8b_bytes() -> tuple[int, int]:
    """(decoder layers, everything else) bytes of Qwen3-8B in bf16, counted on the meta device."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=151_936, hidden_size=4096, intermediate_size=12_288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    layers = sum(p.numel() for p in model.model.layers.parameters())
    return layers * 2, (sum(p.numel() for p in model.parameters()) - layers) * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--init-method", default="", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank is not None:  # one process of a configuration
        measure(args.folder, args.repeats, args.out, args.rank, args.size, args.init_method)
        return

    from bench.models import build_qwen3_103m

    cache = Path(tempfile.gettempdir()) / "anvil-bench-models"
    folder = build_qwen3_103m(cache / "qwen3-103m", cache)
    cores = os.cpu_count() or 1
    whole = _run(folder, args.repeats, 1, cores)
    sharded = _run(folder, args.repeats, 2, max(1, cores // 2))
    mib = 1 << 20
    print(f"qwen3-103m, LoRA rank 32 on every target, {MODELS} models, median of {args.repeats}")
    print(f"  (a) base weights per process, 1 process    {(whole['layers_whole'] + whole['replicated']) / mib:7.1f} MiB"
          f"  (decoder layers {whole['layers_local'] / mib:.1f}, embedding + norm + lm_head {whole['replicated'] / mib:.1f})")
    print(f"  (a) base weights per process, 2 shards     {(sharded['layers_local'] + sharded['replicated']) / mib:7.1f} MiB"
          f"  (decoder layers {sharded['layers_local'] / mib:.1f} of {sharded['layers_whole'] / mib:.1f}, "
          f"whole part {sharded['replicated'] / mib:.1f})")
    for name, what in (("spread", f"{ROWS} requests x {LENGTH} tokens"), ("single", f"1 request of {ROWS} x {LENGTH} tokens")):
        print(f"  (b) {what:<30} 1 process {whole[name] * 1e3:7.0f} ms   2 shards {sharded[name] * 1e3:7.0f} ms"
              f"   ratio {sharded[name] / whole[name]:.2f}x")
    layers, rest = qwen3_8b_bytes()
    gib = 1 << 30
    print(f"  (c) Qwen3-8B bf16: decoder layers {layers / gib:.2f} GiB, embedding + norm + lm_head {rest / gib:.2f} GiB")
    for shards in (1, 2, 4, 8):
        print(f"  (c)   {shards} shard(s): {(layers / shards + rest) / gib:6.2f} GiB of base weights per process")


if __name__ == "__main__":
    main()
