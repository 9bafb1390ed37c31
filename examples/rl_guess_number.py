"""Multi-turn RL with the rl library: the model plays "guess the number" over several chat turns.

    python examples/rl_guess_number.py --base-url http://127.0.0.1:8000 [--log-dir runs/rl_guess_number]

The env (rl/envs/guess_number.py) picks a secret from 1 to --high and answers each guess with
"Higher.", "Lower." or "Correct!"; finding it earns up to 1 (less the later it is found), a
reply that is not a number ends the episode with 0. `rl.train.train` samples groups of episodes
on the same secret, centres the rewards within each group, and takes an importance-sampling step
per batch; it writes config.json, metrics.jsonl and curves.png to --log-dir (and a W&B run with
--wandb-project), and resumes if started again on the same folder.

Conversations are rendered with the `qwen2_5` renderer: its template keeps earlier turns exactly
as they were written, so every next prompt extends the previous prompt and reply, and a whole
episode trains as one datum. (The `qwen3` template rewrites history, which would split it.)

`anvil/tiny-qwen3` has random weights and almost never answers with a number, so every reward
would be 0 and nothing would train. The example therefore starts with a short supervised
warm-up (--warmup-steps) on games guessed at random: it teaches the format (a bare number, then
the end of the turn), not the game. Be aware that in a minute the tiny model does not get good
at it: rewards stay low and noisy, and steps whose groups all score the same are skipped (they
log no loss). The example shows the multi-turn plumbing and the logging; a real chat model
(--base-model, with --warmup-steps 0) is where the reward curve means something. About half a
minute with the defaults on a 2-core CPU.
"""

import argparse
import asyncio
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinker
from tinker import types

from renderers import TrainOnWhat, datum_from_example, get_renderer
from rl.envs.guess_number import GuessNumberDataset, opening
from rl.run_state import last_checkpoint
from rl.train import RLConfig, train


def format_game(rng: random.Random, high: int, max_turns: int) -> list[dict]:
    """A game played by guessing at random: it shows the format (a bare number, then the end of
    the turn), not how to play well."""
    secret = rng.randint(1, high)
    messages = [{"role": "user", "content": opening(high)}]
    for _ in range(rng.randint(1, max_turns)):
        guess = rng.randint(1, high)
        messages.append({"role": "assistant", "content": str(guess)})
        if guess == secret:
            break
        messages.append({"role": "user", "content": "Higher." if guess < secret else "Lower."})
    if messages[-1]["role"] == "user":
        messages.pop()
    return messages


async def warm_up(service: tinker.ServiceClient, base_model: str, renderer, steps: int, high: int, max_turns: int,
                  lr: float) -> str:
    """A few supervised steps on the game's format; returns the training checkpoint RL starts from.
    A random model almost never answers with a number, so without this every reward is 0."""
    training = await service.create_lora_training_client(base_model=base_model, rank=32, seed=0)
    rng = random.Random(0)
    for step in range(steps):
        data = []
        for _ in range(16):
            model_input, weights = renderer.build_supervised_example(
                format_game(rng, high, max_turns), TrainOnWhat.ALL_ASSISTANT_MESSAGES)
            data.append(datum_from_example(model_input, weights))
        forward_backward = training.forward_backward(data, "cross_entropy")
        optim = training.optim_step(types.AdamParams(learning_rate=lr))
        result = await forward_backward
        await optim
        trained = sum(sum(d.loss_fn_inputs["weights"].data) for d in data)
        print(f"warm-up {step + 1}/{steps}  loss per token {result.metrics['loss:sum'] / trained:.3f}")
    return (await training.save_state("guess-number-warm-up")).path


async def run(base_url: str | None, base_model: str, renderer_name: str, log_dir: Path, steps: int, groups: int,
              group_size: int, high: int, max_turns: int, max_tokens: int, lr: float, warmup_steps: int,
              wandb_project: str | None) -> Path:
    service = tinker.ServiceClient(base_url=base_url)
    # the training client asks the server which tokenizer the model uses (a sampling client would
    # look the model name up on the Hugging Face Hub, where anvil's built-in model is not)
    tokenizer = (await service.create_lora_training_client(base_model=base_model, rank=1)).get_tokenizer()
    renderer = get_renderer(renderer_name, tokenizer)
    dataset = GuessNumberDataset(renderer, groups=groups, group_size=group_size, high=high, max_turns=max_turns)
    # the same few secrets every evaluation, so the eval curve compares step to step
    evals = GuessNumberDataset(renderer, groups=groups, group_size=group_size, high=high, max_turns=max_turns, seed=99)
    # a run resuming from its log dir continues from its own checkpoint: no new warm-up
    resuming = last_checkpoint(log_dir) is not None
    warm = None
    if warmup_steps and not resuming:
        warm = await warm_up(service, base_model, renderer, warmup_steps, high, max_turns, lr)
    config = RLConfig(
        base_model=base_model, log_dir=log_dir, steps=steps, learning_rate=lr, init_state_path=warm,
        max_tokens=max_tokens,  # a guess is a number: a few tokens
        eval_every=max(1, steps // 2), wandb_project=wandb_project, wandb_run_name="rl-guess-number",
    )
    result_dir = await train(config, dataset, service, eval_dataset=evals)
    service.close("success").result()
    return result_dir


def main(base_url: str | None = None, base_model: str = "anvil/tiny-qwen3", renderer_name: str = "qwen2_5",
         log_dir: Path = Path("runs/rl_guess_number"), steps: int = 10, groups: int = 2, group_size: int = 8,
         high: int = 4, max_turns: int = 3, max_tokens: int = 6, lr: float = 3e-3, warmup_steps: int = 20,
         wandb_project: str | None = None) -> Path:
    """Train; returns the log folder (its curves.png has the reward curve)."""
    log_dir = Path(log_dir).resolve()
    result_dir = asyncio.run(run(base_url, base_model, renderer_name, log_dir, steps, groups, group_size, high,
                                 max_turns, max_tokens, lr, warmup_steps, wandb_project))
    print(f"curves:  {result_dir / 'curves.png'}")
    print(f"metrics: {result_dir / 'metrics.jsonl'}")
    return result_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("TINKER_BASE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--base-model", default="anvil/tiny-qwen3")
    parser.add_argument("--renderer", default="qwen2_5")
    parser.add_argument("--log-dir", type=Path, default=Path("runs/rl_guess_number"),
                        help="metrics, curves and checkpoints; started again on it, a run resumes")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--groups", type=int, default=2, help="secrets per step")
    parser.add_argument("--group-size", type=int, default=8, help="episodes per secret")
    parser.add_argument("--high", type=int, default=4, help="the secret is in 1..high")
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=6, help="tokens per reply")
    # the tiny model's rate in examples/demo.py; get_lr's 6e-4 moves it too little in a few steps
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup-steps", type=int, default=20, help="supervised steps on the format first (0: none)")
    parser.add_argument("--wandb-project", default=None, help="also log to this W&B project")
    args = parser.parse_args()
    main(args.base_url, args.base_model, args.renderer, args.log_dir, args.steps, args.groups, args.group_size,
         args.high, args.max_turns, args.max_tokens, args.lr, args.warmup_steps, args.wandb_project)
