"""A minimal RL loop on the raw tinker API: sample a group, score it, train on the advantages.

    python examples/rl_loop.py --steps 12
The task is a toy with a dense reward, so that even the tiny random model learns it in a few
steps: the reward of a completion is the fraction of its characters that are digits. Each step
samples a group of completions from the current weights, centres the rewards within the group
(GRPO-style advantages), and takes one `importance_sampling` step on the sampled tokens.
"""

import argparse
import os

import numpy as np
import tinker
from tinker import types

PROMPT = "User: Count with me: 1 2 3\n\nAssistant:"


def reward(text: str) -> float:
    return sum(c.isdigit() for c in text) / max(1, len(text))


def main(base_url: str | None = None, base_model: str = "anvil/tiny-qwen3", steps: int = 12,
         group_size: int = 8, lr: float = 5e-2) -> list[float]:
    service = tinker.ServiceClient(base_url=base_url)
    training = service.create_lora_training_client(base_model=base_model, rank=16, seed=0).result()
    tokenizer = training.get_tokenizer()
    prompt_tokens = tokenizer.encode(PROMPT)
    params = types.SamplingParams(max_tokens=12, temperature=1.0, stop=[])
    history = []
    for step in range(steps):
        sampler = training.save_weights_and_get_sampling_client().result()
        result = sampler.sample(types.ModelInput.from_ints(prompt_tokens), group_size, params).result()
        rewards_G = np.array([reward(tokenizer.decode(s.tokens)) for s in result.sequences])
        advantages_G = rewards_G - rewards_G.mean()
        data = []
        for seq, advantage in zip(result.sequences, advantages_G, strict=True):
            tokens = prompt_tokens + list(seq.tokens)
            n_prompt = len(prompt_tokens) - 1  # targets that are still prompt: no advantage
            data.append(types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": tokens[1:],
                    "logprobs": [0.0] * n_prompt + list(seq.logprobs),
                    "advantages": [0.0] * n_prompt + [float(advantage)] * len(seq.tokens),
                },
            ))
        training.forward_backward(data, "importance_sampling")
        training.optim_step(types.AdamParams(learning_rate=lr)).result()
        history.append(float(rewards_G.mean()))
        print(f"step {step:3d}  mean reward {rewards_G.mean():.3f}  best: {tokenizer.decode(result.sequences[int(rewards_G.argmax())].tokens)!r}")
    service.close("success").result()
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("TINKER_BASE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--base-model", default="anvil/tiny-qwen3")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-2)
    args = parser.parse_args()
    main(args.base_url, args.base_model, args.steps, args.group_size, args.lr)
