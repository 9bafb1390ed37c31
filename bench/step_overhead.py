"""What the service adds to a small training step: SDK → gateway → press → trainer vs compute alone.

One 1 × 16-token forward_backward + optim_step on the 103M Qwen3 (bench/models.py; LoRA rank 32
on every target), on an idle server: the SDK round trip (both requests submitted back to back,
then awaited) against the same step run by a `TrainerWorker` in this process (the pure compute).
The two alternate step by step; figures are medians.

    python -m bench.step_overhead [--steps 20] [--tokens 16]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tinker
from tinker import types

from anvil.base_models import BaseModelRegistry
from anvil.types import AdamStep, ForwardBackwardWork, LoraSpec, TrainDatum
from bench.models import build_qwen3_103m
from gateway.local_server import AnvilServer
from trainer.worker import TrainerWorker

MODEL = "bench/qwen3-103m"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    sequence = np.random.default_rng(0).integers(0, 151_000, size=args.tokens + 1)
    weights = np.ones(args.tokens, np.float32)
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(sequence[:-1].tolist()),
        loss_fn_inputs={"target_tokens": sequence[1:], "weights": weights},
    )
    work = ForwardBackwardWork([TrainDatum(sequence[:-1], {"target_tokens": sequence[1:], "weights": weights})],
                               "cross_entropy", {}, False)
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        folder = build_qwen3_103m(work_dir / "qwen3-103m", work_dir / "cache")
        worker = TrainerWorker(BaseModelRegistry(work_dir / "cache", {MODEL: folder}))
        worker.create_model("local", MODEL, LoraSpec(rank=32, seed=0))
        with AnvilServer(work_dir / "data", extra_models={MODEL: folder}, args=["--sampler-engine", "torch"]) as server:
            client = tinker.ServiceClient(base_url=server.base_url, api_key="tml-bench")
            trainer = client.create_lora_training_client(base_model=MODEL, rank=32, seed=0).result()

            def sdk_step() -> None:
                fb = trainer.forward_backward([datum], "cross_entropy")
                step = trainer.optim_step(types.AdamParams(learning_rate=1e-4))
                fb.result()
                step.result()

            def local_step() -> None:
                worker.forward_backward([("local", work)])
                worker.optim_step("local", AdamStep())

            sdk_times, local_times = [], []
            for step in range(args.steps + 2):
                for run, times in ((sdk_step, sdk_times), (local_step, local_times)):
                    start = time.perf_counter()
                    run()
                    if step >= 2:  # two warm-up steps
                        times.append(time.perf_counter() - start)
            client.close("success").result()
    sdk, local = statistics.median(sdk_times) * 1000, statistics.median(local_times) * 1000
    print(f"{MODEL}: 1 x {args.tokens} tokens, forward_backward + optim_step, median of {args.steps}")
    print(f"  through the SDK          {sdk:7.1f} ms")
    print(f"  trainer alone (compute)  {local:7.1f} ms")
    print(f"overhead: {sdk - local:.1f} ms ({sdk / local:.2f}x the compute)")


if __name__ == "__main__":
    main()
