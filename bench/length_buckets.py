"""Rows of mixed lengths: the trainer's length groups against one pass padded to the longest row.

One forward_backward of `--rows` datums whose lengths spread evenly from `--shortest` to
`--longest` tokens (as an RL batch's sequences do), one rank-32 adapter on every target, on the
103M Qwen3 (bench/models.py), `TrainerWorker` in this process. Baseline: the same call with
length grouping turned off (every row padded to the longest). The two alternate; medians.

    python -m bench.length_buckets [--rows 16] [--shortest 32] [--longest 512] [--repeats 3]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from anvil.base_models import BaseModelRegistry
from anvil.types import ForwardBackwardWork, LoraSpec, TrainDatum
from bench.models import build_qwen3_103m
from trainer import length_buckets
from trainer.worker import TrainerWorker

MODEL = "bench/qwen3-103m"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--shortest", type=int, default=32)
    parser.add_argument("--longest", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    lengths = np.linspace(args.shortest, args.longest, args.rows).astype(int)
    data = []
    for n in lengths:
        sequence = rng.integers(0, 151_000, size=n + 1)
        data.append(TrainDatum(sequence[:-1], {"target_tokens": sequence[1:], "weights": np.ones(n, np.float32)}))
    work = ForwardBackwardWork(data, "cross_entropy", {}, False)
    groups = len(length_buckets.length_buckets(lengths.tolist()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_qwen3_103m(Path(tmp) / "qwen3-103m", Path(tmp) / "cache")
        worker = TrainerWorker(BaseModelRegistry(Path(tmp) / "cache", {MODEL: folder}))
        worker.create_model("m", MODEL, LoraSpec(rank=32, seed=0))
        saved = length_buckets.MIN_PADDING_SAVED
        worker.forward_backward([("m", work)])  # warm-up
        grouped, padded = [], []
        for _ in range(args.repeats):
            for setting, times in ((saved, grouped), (10**9, padded)):
                length_buckets.MIN_PADDING_SAVED = setting
                start = time.perf_counter()
                worker.forward_backward([("m", work)])
                times.append(time.perf_counter() - start)
                worker.models["m"].adapter.zero_grad()
        length_buckets.MIN_PADDING_SAVED = saved
    real = int(lengths.sum())
    print(f"{MODEL}: {args.rows} rows of {args.shortest}..{args.longest} tokens ({real} real, "
          f"{args.rows * args.longest} padded), forward_backward, median of {args.repeats}")
    print(f"  {groups} length groups  {statistics.median(grouped):6.2f} s")
    print(f"  one padded pass   {statistics.median(padded):6.2f} s")
    print(f"speed-up: {statistics.median(padded) / statistics.median(grouped):.2f}x")


if __name__ == "__main__":
    main()
