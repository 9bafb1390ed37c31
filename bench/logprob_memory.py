"""Peak memory of target logprobs + backward at 4,096 tokens: anvil's fused op vs full logits.

On the 103M model's lm_head shape (151,936 × 512, bf16 on a bf16 device, else float32), for 4,096
token rows with random targets and upstream gradients:

  fused  `trainer.logprobs.target_logprobs`: chunked lm_head, float32 log-softmax per chunk,
         backward from the recomputed softmax, chunks of LOGITS_CHUNK_BYTES;
  naive  logits = h·Wᵀ for every row, `.float()`, log_softmax, gather, autograd backward: what a
         plain training loop does.

    python -m bench.logprob_memory [--tokens 4096]

Each variant runs in its own child process; the figure is its peak resident memory (CPU) or
peak allocated memory (CUDA) above what it held before the computation.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from anvil.device import pick_device

VOCAB, HIDDEN = 151_936, 512


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def run_variant(variant: str, tokens: int) -> dict:
    from trainer.logprobs import LogitsWorkspace, target_logprobs

    device, dtype = pick_device()
    generator = torch.Generator(device=device).manual_seed(0)
    weight = torch.randn(VOCAB, HIDDEN, dtype=dtype, device=device, generator=generator) / 20
    hidden = torch.randn(tokens, HIDDEN, dtype=dtype, device=device, generator=generator).requires_grad_()
    targets = torch.randint(0, VOCAB, (tokens, 1), device=device, generator=generator)
    upstream = torch.randn(tokens, 1, device=device, generator=generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()
    start = time.perf_counter()
    if variant == "fused":
        logprobs = target_logprobs(hidden, targets, weight, [], LogitsWorkspace())
    else:
        logprobs = torch.log_softmax((hidden @ weight.T).float(), -1).gather(-1, targets)
    (logprobs * upstream).sum().backward()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        # ru_maxrss is in KiB on Linux; the setup above stays below the computation's peak
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"peak_bytes": peak, "seconds": seconds, "dtype": str(dtype).removeprefix("torch.")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--variant", choices=["fused", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.tokens)))
        return
    results = {}
    for variant in ("fused", "naive"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.logprob_memory", "--variant", variant, "--tokens", str(args.tokens)],
            check=True, capture_output=True, text=True,
        ).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    fused, naive = results["fused"], results["naive"]
    print(f"target logprobs + backward, {args.tokens} tokens x {VOCAB} vocabulary, {fused['dtype']} lm_head")
    for name, r in results.items():
        print(f"  {name:6s} peak {r['peak_bytes'] / 2**20:8.0f} MiB   {r['seconds']:6.2f} s")
    print(f"peak memory fused / naive: {fused['peak_bytes'] / naive['peak_bytes']:.3f}x "
          f"({naive['peak_bytes'] / fused['peak_bytes']:.1f}x less); time fused / naive: {fused['seconds'] / naive['seconds']:.2f}x")


if __name__ == "__main__":
    main()
