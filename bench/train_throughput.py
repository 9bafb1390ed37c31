"""Training throughput: anvil through the SDK against the simplest script a user could write instead.

On the 103M-parameter Qwen3 with the real 151,936-row vocabulary (bench/models.py), LoRA rank 32
on every target (attention, MLP and lm_head: the SDK's default), batches of 8 × 256 tokens, one
forward_backward + optim_step per step:

  anvil     the official SDK → gateway → press → trainer, in a child process, at `--precision`
            (default auto: bf16 on CPUs with AVX-512 BF16 or AMX, and on CUDA);
  baseline  a bare PEFT + torch AdamW loop in this process: bf16 base weights, full float32
            logits, `cross_entropy` over them (`--baseline-precision fp32` for the float32 loop).

    python -m bench.train_throughput [--steps 4] [--rounds 2] [--batch 8] [--tokens 256]

The two alternate in rounds of `--steps` measured steps (after one warm-up step each), so the
machine's noise hits both; while one runs the other is idle. Figures are medians over all rounds.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tinker
import torch
from tinker import types

from anvil.device import pick_device
from bench.models import build_qwen3_103m
from gateway.local_server import AnvilServer

MODEL = "bench/qwen3-103m"
API_KEY = "tml-bench"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


def batches(count: int, batch: int, tokens: int, vocab: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, vocab, size=(batch, tokens + 1)) for _ in range(count)]


class PeftLoop:
    """The baseline: what a user would write with peft and torch alone."""

    def __init__(self, folder: Path, precision: str):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        device, dtype = pick_device(precision)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
        config = LoraConfig(r=32, lora_alpha=32, target_modules=LORA_TARGETS)
        self.model = get_peft_model(model, config)
        trained = [p for p in self.model.parameters() if p.requires_grad]
        for p in trained:
            p.data = p.data.float()  # float32 LoRA weights and AdamW state, as anvil keeps them
        self.optimizer = torch.optim.AdamW(trained, lr=1e-4)
        self.device = device

    def step(self, batch: np.ndarray) -> None:
        ids = torch.from_numpy(batch).to(self.device)
        logits = self.model(input_ids=ids[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class SdkLoop:
    """anvil as a user drives it: forward_backward and optim_step submitted back to back."""

    def __init__(self, base_url: str):
        self.client = tinker.ServiceClient(base_url=base_url, api_key=API_KEY)
        self.trainer = self.client.create_lora_training_client(base_model=MODEL, rank=32, seed=0).result()

    def step(self, batch: np.ndarray) -> None:
        data = [
            types.Datum(
                model_input=types.ModelInput.from_ints(row[:-1].tolist()),
                loss_fn_inputs={"target_tokens": row[1:], "weights": np.ones(len(row) - 1, np.float32)},
            )
            for row in batch
        ]
        fb = self.trainer.forward_backward(data, "cross_entropy")
        step = self.trainer.optim_step(types.AdamParams(learning_rate=1e-4))
        fb.result()
        step.result()


def timed_steps(loop, data: list[np.ndarray]) -> list[float]:
    times = []
    for batch in data:
        start = time.perf_counter()
        loop.step(batch)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--baseline-precision", default="bf16", choices=["fp32", "bf16"])
    args = parser.parse_args()
    tokens_per_step = args.batch * args.tokens
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = build_qwen3_103m(work / "qwen3-103m", work / "cache")
        data = batches(args.steps + 1, args.batch, args.tokens, vocab=151_000)
        server_args = ["--sampler-engine", "torch", "--precision", args.precision]
        with AnvilServer(work / "data", extra_models={MODEL: folder}, args=server_args) as server:
            anvil, baseline = SdkLoop(server.base_url), PeftLoop(folder, args.baseline_precision)
            anvil.step(data[0])
            baseline.step(data[0])
            anvil_times, baseline_times = [], []
            for _ in range(args.rounds):
                anvil_times += timed_steps(anvil, data[1:])
                baseline_times += timed_steps(baseline, data[1:])
            anvil.client.close("success").result()
            precision = server.log_path.read_text().partition("precision: ")[2].split(" ")[0] or args.precision
    anvil_rate = tokens_per_step / statistics.median(anvil_times)
    baseline_rate = tokens_per_step / statistics.median(baseline_times)
    print(f"{MODEL}: {args.batch} x {args.tokens} tokens per step, LoRA rank 32 on every target, "
          f"median of {len(anvil_times)} steps")
    print(f"  anvil (SDK -> gateway -> trainer, {precision}) {anvil_rate:8.0f} tokens/s")
    print(f"  bare PEFT loop ({args.baseline_precision} weights, float32 logits) {baseline_rate:8.0f} tokens/s")
    print(f"anvil / bare PEFT: {anvil_rate / baseline_rate:.2f}x")


if __name__ == "__main__":
    main()
