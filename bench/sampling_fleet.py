"""Sampling through anvil (SDK → gateway → fleet → vLLM) against vLLM called directly.

On a 103M-parameter Qwen3 with the real 151,936-row vocabulary (bench/models.py), with a rank-32
adapter on attention and MLP trained through the SDK, 128 new tokens per sequence, sampled-token
logprobs on everywhere:

  (a) anvil vs vLLM's `LLM.generate` called directly with the same adapter (merged into the
      weights: the fastest direct way to serve one adapter) and batch: one call of 64 sequences,
      and 8 concurrent calls of 8;
  (b) the hot adapter vs the base model on anvil's own engine;
  (c) `save_weights_for_sampler` returning → the first token sampled on the new weights.

    python -m bench.sampling_fleet [--repeats 2] [--tokens 128] [--direct-lora]

The server runs in a child process and is stopped before the direct engine starts, so the two
never share the 2 cores; each figure is the median of `--repeats` runs. `--direct-lora` also
times vLLM's own LoRA path directly (slow on a CPU), for reference.
"""

import argparse
import concurrent.futures
import statistics
import tempfile
import time
from pathlib import Path

import tinker
from tinker import types

from anvil.checkpoint_folders import CHECKPOINTS_DIR, latest_version, named_folder
from anvil.device import vllm_dtype, vllm_enforce_eager, vllm_kv_cache_bytes
from bench.models import build_qwen3_103m
from gateway.local_server import AnvilServer

MODEL = "bench/qwen3-103m"
PROMPT = [151644, 872, 198, 9707, 11, 1246, 525, 498, 30, 151645, 198, 151644, 77091, 198]
API_KEY = "tml-bench"


def _median_rate(run, tokens: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return tokens / statistics.median(times)


def measure_anvil(folder: Path, work: Path, args) -> tuple[dict[str, float], Path]:
    params = types.SamplingParams(max_tokens=args.tokens, temperature=1.0, seed=0, stop=[])
    prompt = types.ModelInput.from_ints(PROMPT)
    with AnvilServer(work / "data", extra_models={MODEL: folder}, args=["--sampler-engine", "vllm"]) as server:
        client = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
        trainer = client.create_lora_training_client(base_model=MODEL, rank=32, seed=0, train_unembed=False).result()
        datum = types.Datum(
            model_input=types.ModelInput.from_ints(PROMPT[:-1]),
            loss_fn_inputs={"target_tokens": PROMPT[1:], "weights": [1.0] * (len(PROMPT) - 1)},
        )
        trainer.forward_backward([datum], "cross_entropy").result()
        trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
        path = trainer.save_weights_for_sampler("bench").result().path
        adapter_folder = latest_version(named_folder(work / "data", trainer.model_id, "sampler_weights", "bench"))
        tuned = client.create_sampling_client(model_path=path).result()
        base = client.create_sampling_client(base_model=MODEL).result()
        for sampler in (tuned, base):  # engine start and first swap are not what is measured
            sampler.sample(prompt, 2, types.SamplingParams(max_tokens=4, seed=0)).result()

        def one_call(sampler):
            return lambda: sampler.sample(prompt, 64, params).result()

        def eight_calls(sampler):
            def run():
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda i: sampler.sample(prompt, 8, params.model_copy(update={"seed": i})).result(), range(8)))

            return run

        total = 64 * args.tokens
        figures = {
            "anvil adapter 1x64": _median_rate(one_call(tuned), total, args.repeats),
            "anvil adapter 8x8": _median_rate(eight_calls(tuned), total, args.repeats),
            "anvil base 1x64": _median_rate(one_call(base), total, args.repeats),
        }
        figures["handoff s (median of 5)"] = _handoff(trainer, datum, prompt)
        # the SDK's default adapter also trains lm_head: its merge rewrites the 151k-row lm_head
        with_unembed = client.create_lora_training_client(base_model=MODEL, rank=32, seed=0).result()
        figures["handoff with lm_head s (median of 5)"] = _handoff(with_unembed, datum, prompt)
        merged = work / "merged"
        _merge(folder, adapter_folder, merged)
        client.close("success").result()
    return figures, merged


def _handoff(trainer, datum: types.Datum, prompt: types.ModelInput) -> float:
    """Median time from save_weights_for_sampler returning to the first token on the new weights."""
    times = []
    for step in range(5):
        trainer.forward_backward([datum], "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
        sampler = trainer.save_weights_and_get_sampling_client().result()
        start = time.perf_counter()
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=1, seed=step)).result()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _merge(base: Path, adapter: Path, out: Path) -> None:
    import shutil

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    PeftModel.from_pretrained(model, adapter).merge_and_unload().save_pretrained(out)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json", "generation_config.json"):
        if (base / name).exists():
            shutil.copyfile(base / name, out / name)


def measure_direct(folder: Path, adapter: Path | None, args, max_tokens: int) -> dict[str, float]:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    lora = {"enable_lora": True, "max_lora_rank": 32, "max_loras": 1} if adapter else {}
    llm = LLM(
        model=str(folder), dtype=vllm_dtype(), enforce_eager=vllm_enforce_eager(),
        kv_cache_memory_bytes=vllm_kv_cache_bytes(), seed=0, **lora,
    )
    request = LoRARequest("bench", 1, str(adapter)) if adapter else None
    prompt = {"prompt_token_ids": PROMPT}

    def generate(calls: int, n: int) -> None:
        params = [SamplingParams(n=n, max_tokens=max_tokens, temperature=1.0, seed=i, logprobs=0, ignore_eos=True) for i in range(calls)]
        llm.generate([prompt] * calls, params, lora_request=request, use_tqdm=False)

    generate(1, 2)
    total = 64 * max_tokens
    label = "direct vLLM LoRA" if adapter else "direct vLLM merged"
    figures = {
        f"{label} 1x64": _median_rate(lambda: generate(1, 64), total, args.repeats),
        f"{label} 8x8": _median_rate(lambda: generate(8, 8), total, args.repeats),
    }
    llm.llm_engine.engine_core.shutdown()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--direct-lora", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = build_qwen3_103m(work / "qwen3-103m", work / "cache")
        figures, merged = measure_anvil(folder, work, args)
        figures.update(measure_direct(merged, None, args, args.tokens))
        if args.direct_lora:
            adapter = latest_version(next((work / "data" / CHECKPOINTS_DIR).glob("*/sampler_weights/bench")))
            figures.update(measure_direct(folder, adapter, args, args.tokens))
    print(f"{MODEL}: 64 sequences x {args.tokens} tokens, logprobs on, median of {args.repeats}")
    for name, value in figures.items():
        print(f"  {name:40s} {value:10.2f}" + ("" if "handoff" in name else " tokens/s"))
    print(f"(a) anvil / direct, 1 call of 64:    {figures['anvil adapter 1x64'] / figures['direct vLLM merged 1x64']:.2f}x")
    print(f"(a) anvil / direct, 8 calls of 8:    {figures['anvil adapter 8x8'] / figures['direct vLLM merged 8x8']:.2f}x")
    print(f"(b) hot adapter / base model:        {figures['anvil adapter 1x64'] / figures['anvil base 1x64']:.2f}x")
    print(f"(c) save_weights_for_sampler -> first token: {figures['handoff s (median of 5)']:.3f} s "
          f"(attention + MLP adapter), {figures['handoff with lm_head s (median of 5)']:.3f} s (with lm_head)")


if __name__ == "__main__":
    main()
