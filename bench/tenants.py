"""Many tenants at once: N training clients stepping concurrently vs the same work one at a time.

Each tenant has its own LoRA adapter (rank 32 on every target) on the 103M Qwen3
(bench/models.py) and runs `--steps` steps of forward_backward (1 × 64 tokens) + optim_step
through the SDK. Concurrent: every tenant in its own thread, so the press batches their work
into shared passes. One at a time: tenant after tenant, on the same server and adapters. The
figure is aggregate tokens/s concurrent over one at a time, for each N.

    python -m bench.tenants [--tenants 1 2 4 8 16] [--steps 3] [--tokens 64]

Nothing in it names a device: the same command measures a CUDA machine.
"""

import argparse
import concurrent.futures
import tempfile
import time
from pathlib import Path

import numpy as np
import tinker
from tinker import types

from bench.models import build_qwen3_103m
from bench.data import random_datum
from gateway.local_server import AnvilServer

MODEL = "bench/qwen3-103m"


def _run_steps(trainer: tinker.TrainingClient, data: list[types.Datum]) -> None:
    for datum in data:
        fb = trainer.forward_backward([datum], "cross_entropy")
        step = trainer.optim_step(types.AdamParams(learning_rate=1e-4))
        fb.result()
        step.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = build_qwen3_103m(work / "qwen3-103m", work / "cache")
        with AnvilServer(work / "data", extra_models={MODEL: folder}, args=["--sampler-engine", "torch"]) as server:
            client = tinker.ServiceClient(base_url=server.base_url, api_key="tml-bench")
            trainers = [
                client.create_lora_training_client(base_model=MODEL, rank=32, seed=i).result()
                for i in range(max(args.tenants))
            ]
            _run_steps(trainers[0], [random_datum(rng, args.tokens, vocab=151_000)])  # warm-up
            for n in args.tenants:
                data = [[random_datum(rng, args.tokens, vocab=151_000) for _ in range(args.steps)] for _ in range(n)]
                start = time.perf_counter()
                for trainer, tenant_data in zip(trainers, data):
                    _run_steps(trainer, tenant_data)
                one_at_a_time = time.perf_counter() - start
                start = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(n) as pool:
                    list(pool.map(_run_steps, trainers[:n], data))
                concurrent_s = time.perf_counter() - start
                tokens = n * args.steps * args.tokens
                rows.append((n, tokens / one_at_a_time, tokens / concurrent_s))
            client.close("success").result()
    print(f"{MODEL}: tenants x {args.steps} steps of 1 x {args.tokens} tokens (forward_backward + optim_step)")
    print(f"  {'tenants':>7}  {'one at a time':>14}  {'concurrent':>11}  ratio")
    for n, alone, together in rows:
        print(f"  {n:7d}  {alone:8.0f} tok/s  {together:6.0f} tok/s  {together / alone:.2f}x")


if __name__ == "__main__":
    main()
