"""What the press gains by running many adapters' work in one base-model pass.

Baseline: each model's forward_backward runs alone, one trainer call per model (a server that
executes one request at a time). Press: the same requests in ONE trainer call, mixed adapters.
Both run in the same process on the same data, alternating, so the machine's noise hits both.

    python bench/press_batching.py [--size tiny|small] [--models 8] [--datums 2] [--tokens 128] [--repeats 5]

`--size small` builds a random Qwen3 of ~60M parameters (hidden 768, 8 layers), where the base
model's matmuls, which the press shares, weigh more than per-operation overheads.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from anvil.base_models import BaseModelRegistry
from anvil.tiny_qwen3 import TINY_QWEN3_NAME, ensure_tiny_qwen3
from anvil.types import ForwardBackwardWork, LoraSpec, TrainDatum
from trainer.worker import TrainerWorker


def make_work(rng: np.random.Generator, datums: int, tokens: int) -> ForwardBackwardWork:
    data = []
    for _ in range(datums):
        sequence = rng.integers(5, 1000, size=tokens + 1)
        data.append(TrainDatum(sequence[:-1], {"target_tokens": sequence[1:], "weights": np.ones(tokens, np.float32)}))
    return ForwardBackwardWork(data=data, loss_fn="cross_entropy", loss_config={}, forward_only=False)


def build_small_qwen3(folder: Path, cache: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_qwen3(cache))
    config = Qwen3Config(
        vocab_size=1024, hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
        num_attention_heads=12, num_key_value_heads=4, head_dim=64, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--datums", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        registry = BaseModelRegistry(Path(cache))
        base_model = TINY_QWEN3_NAME
        if args.size == "small":
            base_model = "bench/small-qwen3"
            registry.named[base_model] = build_small_qwen3(Path(cache) / "small", Path(cache))
        worker = TrainerWorker(registry)
        rng = np.random.default_rng(0)
        items = []
        for i in range(args.models):
            model_id = f"model-{i}"
            worker.create_model(model_id, base_model, LoraSpec(rank=16, seed=i))
            items.append((model_id, make_work(rng, args.datums, args.tokens)))
        worker.forward_backward(items)  # warm up

        one_by_one, pressed = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for item in items:
                worker.forward_backward([item])
            one_by_one.append(time.perf_counter() - start)
            start = time.perf_counter()
            worker.forward_backward(items)
            pressed.append(time.perf_counter() - start)

    base, press = statistics.median(one_by_one), statistics.median(pressed)
    print(f"{base_model}: {args.models} models x {args.datums} datums x {args.tokens} tokens, median of {args.repeats}")
    print(f"one request at a time: {base * 1000:8.1f} ms")
    print(f"pressed into one pass: {press * 1000:8.1f} ms")
    print(f"speed-up: {base / press:.2f}x")


if __name__ == "__main__":
    main()
