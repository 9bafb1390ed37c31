"""Sample a trained checkpoint (or the base model), and score a text with `compute_logprobs`.

    python examples/sample_checkpoint.py --base-url http://127.0.0.1:8000 \\
        --model-path tinker://<run>/sampler_weights/<name> --prompt "What is the capital of France?"
    python examples/sample_checkpoint.py --raw --prompt "Once upon a time"        # the base model, raw text

--model-path takes the sampler weights a training run saved (`save_weights_for_sampler`, such as
the path examples/sft_chat.py prints). Without it nothing is loaded or trained: the base model
(--base-model) is sampled, and the output says so.

The prompt is a user message rendered with the renderer recommended for the base model (`qwen3`
for `anvil/tiny-qwen3`), and each reply is parsed back into a message; with --raw the prompt is
plain text, continued as it is. Every sample is printed with the sum and mean of its tokens'
logprobs. Then `compute_logprobs` scores --score-text token by token under the same weights:
how likely the model finds a given text (the first token has no context, so no logprob).
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinker
from tinker import types

from renderers import get_renderer, recommended_renderer_name


def main(base_url: str | None = None, model_path: str | None = None, base_model: str = "anvil/tiny-qwen3",
         prompt: str = "What is the capital of France?", raw: bool = False, num_samples: int = 3,
         max_tokens: int = 24, temperature: float = 0.8, score_text: str = "The capital of France is Paris.",
         seed: int = 0) -> list[str]:
    """Print the samples and the scored text; returns the sampled texts."""
    service = tinker.ServiceClient(base_url=base_url)
    if model_path:
        sampler = service.create_sampling_client(model_path=model_path).result()
        base_model = sampler.get_base_model()  # the checkpoint knows which base model it adapts
        print(f"sampling {model_path} (base model {base_model})")
    else:
        sampler = service.create_sampling_client(base_model=base_model).result()
        print(f"no --model-path: sampling the base model {base_model}, with no fine-tuning")

    # A training client's info names the tokenizer the server itself uses (for anvil's built-in
    # model, a folder on the server, which the Hugging Face Hub does not have). The rank-1 adapter
    # made for this is never trained.
    tokenizer = service.create_lora_training_client(base_model=base_model, rank=1).result().get_tokenizer()

    if raw:
        renderer = None
        model_input = types.ModelInput.from_ints(tokenizer.encode(prompt, add_special_tokens=False))
        stop: list[str] | list[int] = []
    else:
        renderer = get_renderer(recommended_renderer_name(base_model), tokenizer)
        model_input = renderer.build_generation_prompt([{"role": "user", "content": prompt}])
        stop = renderer.get_stop_sequences()
    params = types.SamplingParams(max_tokens=max_tokens, temperature=temperature, stop=stop, seed=seed)
    response = sampler.sample(model_input, num_samples=num_samples, sampling_params=params).result()

    print(f"prompt ({'raw text' if raw else 'user message'}, {model_input.length} tokens): {prompt!r}")
    texts = []
    for index, sequence in enumerate(response.sequences):
        if renderer is None:
            text, ending = tokenizer.decode(sequence.tokens), sequence.stop_reason
        else:
            parsed = renderer.parse_response(sequence.tokens)
            text, ending = parsed.message.get("content") or "", parsed.ending
        logprobs = sequence.logprobs or []
        total = sum(logprobs)
        print(f"[{index}] {len(sequence.tokens)} tokens, logprob sum {total:.2f}, "
              f"mean {total / max(1, len(logprobs)):.3f}, ended: {ending}")
        print(f"    {text!r}")
        texts.append(text)

    # compute_logprobs: the logprob of each token of a text given the tokens before it
    tokens = tokenizer.encode(score_text, add_special_tokens=False)
    scored = sampler.compute_logprobs(types.ModelInput.from_ints(tokens)).result()
    print(f"compute_logprobs of {score_text!r}:")
    for token, logprob in zip(tokens, scored, strict=True):
        shown = "   (none)" if logprob is None else f"{logprob:9.3f}"
        print(f"  {shown}  {tokenizer.decode([token])!r}")
    known = [lp for lp in scored if lp is not None]
    print(f"  total {sum(known):.2f} over {len(known)} scored tokens")
    service.close("success").result()
    return texts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("TINKER_BASE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--model-path", default=None, help="tinker://…/sampler_weights/… (default: the base model)")
    parser.add_argument("--base-model", default="anvil/tiny-qwen3", help="sampled when no --model-path is given")
    parser.add_argument("--prompt", default="What is the capital of France?")
    parser.add_argument("--raw", action="store_true", help="the prompt is raw text, not a chat message")
    parser.add_argument("--num-samples", "-n", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--score-text", default="The capital of France is Paris.",
                        help="text to score with compute_logprobs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.base_url, args.model_path, args.base_model, args.prompt, args.raw, args.num_samples,
         args.max_tokens, args.temperature, args.score_text, args.seed)
