"""Fairness: a small user's tiny requests while a large user's big ones run.

User A starts a large sampling request (`--large-samples` × `--large-tokens`) and a large
forward_backward (`--large-rows` × `--row-tokens`); while both run, user B sends a 2-token sample
and a 16-token training step, one after another, `--probes` times. Reported: how long each of
B's requests took, against the same requests with nothing else running (the baseline, measured
first in the same run), and how long A's requests took.

    python -m bench.fairness [--sampler-engine torch|vllm] [--large-samples 64] [--large-tokens 1000]
        [--train-piece-tokens N]      (1000000000: never split a request, the baseline)

Nothing in it names a device: the same command measures a CUDA machine.
"""

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tinker
from tinker import types

from bench.data import random_datum
from gateway.local_server import AnvilServer

MODEL = "anvil/tiny-qwen3"


def _probe(sampler: tinker.SamplingClient, trainer: tinker.TrainingClient, rng) -> tuple[float, float]:
    """Seconds for one tiny sample, then one tiny training step."""
    started = time.monotonic()
    sampler.sample(types.ModelInput.from_ints([1, 2, 3]), num_samples=1,
                   sampling_params=types.SamplingParams(max_tokens=2)).result()
    sampled = time.monotonic()
    trainer.forward_backward([random_datum(rng, 16)], "cross_entropy").result()
    trainer.optim_step(types.AdamParams(learning_rate=1e-4)).result()
    return sampled - started, time.monotonic() - sampled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sampler-engine", default="torch", choices=["torch", "vllm"])
    parser.add_argument("--large-samples", type=int, default=64)
    parser.add_argument("--large-tokens", type=int, default=1000)
    parser.add_argument("--large-rows", type=int, default=64)
    parser.add_argument("--row-tokens", type=int, default=1024)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--train-piece-tokens", type=int, default=None,
                        help="the server's --train-piece-tokens (default its own; 1000000000: never split, the baseline)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    server_args = ["--sampler-engine", args.sampler_engine]
    if args.train_piece_tokens is not None:
        server_args += ["--train-piece-tokens", str(args.train_piece_tokens)]
    with tempfile.TemporaryDirectory() as data_dir, AnvilServer(Path(data_dir), args=server_args) as server:
        big = tinker.ServiceClient(base_url=server.base_url, api_key="tml-fairness-large")
        small = tinker.ServiceClient(base_url=server.base_url, api_key="tml-fairness-small")
        big_trainer = big.create_lora_training_client(base_model=MODEL, rank=16).result()
        big_sampler = big.create_sampling_client(base_model=MODEL).result()
        trainer = small.create_lora_training_client(base_model=MODEL, rank=4).result()
        sampler = small.create_sampling_client(base_model=MODEL).result()
        _probe(sampler, trainer, rng)  # warm-up
        alone = [_probe(sampler, trainer, rng) for _ in range(args.probes)]

        large_times: dict[str, float] = {}

        def large_sample():
            started = time.monotonic()
            big_sampler.sample(types.ModelInput.from_ints([1, 2, 3]), num_samples=args.large_samples,
                               sampling_params=types.SamplingParams(max_tokens=args.large_tokens, stop=[])).result()
            large_times["sample"] = time.monotonic() - started

        def large_step():
            started = time.monotonic()
            rows = [random_datum(np.random.default_rng(i), args.row_tokens) for i in range(args.large_rows)]
            big_trainer.forward_backward(rows, "cross_entropy").result()
            large_times["forward_backward"] = time.monotonic() - started

        threads = [threading.Thread(target=large_sample), threading.Thread(target=large_step)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # both large requests are running
        during = []
        while any(t.is_alive() for t in threads) and len(during) < args.probes:
            during.append(_probe(sampler, trainer, rng))
        for thread in threads:
            thread.join()
        big.close("success").result()
        small.close("success").result()

    def line(name, rows):
        samples, steps = [r[0] for r in rows], [r[1] for r in rows]
        return (f"{name:<28} tiny sample median {statistics.median(samples):6.2f} s  max {max(samples):6.2f} s   "
                f"tiny step median {statistics.median(steps):6.2f} s  max {max(steps):6.2f} s")

    print(f"engine {args.sampler_engine}, train pieces of {args.train_piece_tokens or 'the default'} tokens; large user: {args.large_samples} samples × {args.large_tokens} tokens, "
          f"forward_backward {args.large_rows} × {args.row_tokens} tokens")
    print(line("alone", alone))
    print(line(f"during the large ones ({len(during)})", during))
    print(f"large sample {large_times['sample']:.1f} s, large forward_backward {large_times['forward_backward']:.1f} s")


if __name__ == "__main__":
    main()
