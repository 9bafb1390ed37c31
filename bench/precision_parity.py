"""How far trainer and sampler logprobs of the same tokens drift apart at each base precision.

For each precision (`anvil serve --precision fp32|bf16`): a server with a vLLM sampling engine
(the default on this machine), a LoRA adapter (rank 8, every target) trained for a few SFT steps,
then `--samples` sequences of `--tokens` tokens sampled from it. Reported per precision: the largest
|trainer logprob − sampler logprob| over every sampled token (the sampler's own sampled-token
logprobs, and `compute_logprobs` on prompt + completion), and the same between the trainer's
logprobs of one sequence alone and inside a padded batch of different lengths.

    python -m bench.precision_parity [--model tiny|103m] [--samples 8] [--tokens 32]

The tolerances the parity tests use (tests/sdk_helpers.py) rest on these figures.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tinker
from tinker import types

from anvil.tiny_qwen3 import TINY_QWEN3_NAME
from bench.models import build_qwen3_103m
from gateway.local_server import AnvilServer

# a chat prompt in the Qwen3 vocabulary, folded into the model's vocabulary (the tiny model's is 1,024)
QWEN_PROMPT = [151644, 872, 198, 9707, 11, 1246, 525, 498, 30, 151645, 198, 151644, 77091, 198]
PROMPT = QWEN_PROMPT


def _datum(tokens: list[int]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": np.asarray(tokens[1:]), "weights": np.ones(len(tokens) - 1, np.float32)},
    )


def _forward(trainer, sequences: list[list[int]]) -> list[np.ndarray]:
    result = trainer.forward([_datum(s) for s in sequences], "cross_entropy").result()
    return [np.asarray(out["logprobs"].data) for out in result.loss_fn_outputs]


def measure(precision: str, model: str, extra: dict, work: Path, args) -> dict[str, float]:
    server_args = ["--sampler-engine", "vllm", "--precision", precision]
    with AnvilServer(work / f"data-{precision}", extra_models=extra, args=server_args) as server:
        client = tinker.ServiceClient(base_url=server.base_url, api_key="tml-bench")
        trainer = client.create_lora_training_client(base_model=model, rank=8, seed=0).result()
        for _ in range(4):
            trainer.forward_backward([_datum(PROMPT + PROMPT[3:7])], "cross_entropy")
            trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
        sampler = trainer.save_weights_and_get_sampling_client().result()
        params = types.SamplingParams(max_tokens=args.tokens, seed=0, temperature=1.0, stop=[])
        sampled = sampler.sample(types.ModelInput.from_ints(PROMPT), args.samples, params).result().sequences
        full = [PROMPT + list(s.tokens) for s in sampled]
        alone = [_forward(trainer, [f])[0] for f in full]
        # one padded batch: every sequence cut to a different length
        cut = [f[: len(PROMPT) + 2 + i * (args.tokens - 2) // max(1, args.samples - 1)] for i, f in enumerate(full)]
        batched = _forward(trainer, cut)
        sampler_gap = max(np.abs(np.asarray(s.logprobs) - lp[len(PROMPT) - 1 :]).max() for s, lp in zip(sampled, alone))
        computed_gap = 0.0
        for f, lp in zip(full, alone):
            computed = np.asarray(sampler.compute_logprobs(types.ModelInput.from_ints(f)).result()[1:])
            computed_gap = max(computed_gap, float(np.abs(computed - lp).max()))
        batch_gap = max(np.abs(b - a[: len(b)]).max() for b, a in zip(batched, alone))
        client.close("success").result()
    return {"sampled": float(sampler_gap), "compute_logprobs": computed_gap, "batched vs alone": float(batch_gap)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "103m"], default="tiny")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        global PROMPT
        if args.model == "tiny":
            model, extra = TINY_QWEN3_NAME, {}
            PROMPT = [t % 1000 for t in QWEN_PROMPT]
        else:
            model = "bench/qwen3-103m"
            extra = {model: build_qwen3_103m(work / "qwen3-103m", work / "cache")}
        rows = {p: measure(p, model, extra, work, args) for p in ("fp32", "bf16")}
    print(f"{model}: max |trainer - sampler| logprob over {args.samples} x {args.tokens} sampled tokens (vLLM engine)")
    print(f"  {'precision':9}  {'sampled':>9}  {'compute_logprobs':>16}  {'batched vs alone':>16}")
    for precision, r in rows.items():
        print(f"  {precision:9}  {r['sampled']:9.5f}  {r['compute_logprobs']:16.5f}  {r['batched vs alone']:16.5f}")


if __name__ == "__main__":
    main()
