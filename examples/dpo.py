"""Direct Preference Optimization (DPO) through `forward_backward_custom`, the loss computed in torch.

    python examples/dpo.py --base-url http://127.0.0.1:8000 [--steps 10] [--beta 0.1]

Each preference pair is a prompt with a chosen and a rejected reply (here: polite versus rude
answers). Both replies are rendered with the base model's recommended renderer, and the example
trains a LoRA to prefer the chosen one relative to the base model:

    loss = −log σ(β · [(π_c − ref_c) − (π_r − ref_r)])

where π and ref are the summed logprobs of the reply tokens (only the reply: the prompt's
logprobs cancel out and would only add noise) under the policy and under the base model.

The reference logprobs are computed once, before training, with a `forward` on the fresh LoRA:
its adapter starts at zero, so that forward is the base model's, token for token the same
numerics the policy is later measured with (so the first step's loss is exactly log 2). Each
step then calls `forward_backward_custom` with a callback: the SDK runs a forward, hands the
callback every datum's per-token logprobs as torch tensors, back-propagates the loss it returns
to those logprobs, and sends the gradient to the server as per-token weights for the backward
pass. Loss and preference accuracy (how many pairs' chosen margin is above the rejected one)
are logged per step to --log-dir (metrics.jsonl, curves.png; W&B with --wandb-project).

About half a minute with the defaults on a 2-core CPU against the tiny model.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinker
import torch
import torch.nn.functional as F
from tinker import types

from renderers import (
    TrainOnWhat,
    datum_from_example,
    get_renderer,
    recommended_renderer_name,
)
from rl.metric_keys import ACCURACY, LOSS, STEP_TIME_S
from rl.tracking import Tracker

# (prompt, chosen, rejected)
PAIRS = [
    ("Can you help me with my homework?", "Of course, I would be glad to help. What is the question?",
     "No. Do it yourself."),
    ("Where is the train station?", "It is two streets north of here, next to the park.",
     "Figure it out, I am busy."),
    ("I made a mistake in my report.", "That happens to everyone. Let us fix it together.",
     "That was careless of you."),
    ("Could you repeat that, please?", "Sure, happy to. I said the meeting starts at nine.",
     "I already told you once."),
    ("Thanks for your help today.", "You are very welcome, it was a pleasure.",
     "Whatever."),
    ("Is it going to rain tomorrow?", "The forecast says light rain in the afternoon, so an umbrella may help.",
     "How should I know?"),
    ("What time is it?", "It is a quarter past three.",
     "Buy a watch."),
    ("May I sit here?", "Yes, please do, the seat is free.",
     "Go sit somewhere else."),
]


def pair_datums(renderer, prompt: str, chosen: str, rejected: str) -> tuple[types.Datum, types.Datum]:
    """The chosen and rejected conversations as datums whose weights are 1 on the reply only."""
    datums = []
    for reply in (chosen, rejected):
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
        model_input, weights = renderer.build_supervised_example(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        datums.append(datum_from_example(model_input, weights))
    return datums[0], datums[1]


def reply_logprob(datum: types.Datum, logprobs: torch.Tensor) -> torch.Tensor:
    """Sum of the logprobs of the reply's tokens (weight 1), differentiable in `logprobs`."""
    weights = datum.loss_fn_inputs["weights"].to_torch().to(logprobs.dtype)
    return (logprobs * weights).sum()


def main(base_url: str | None = None, base_model: str = "anvil/tiny-qwen3", steps: int = 10, beta: float = 0.1,
         lr: float = 3e-3, rank: int = 16, log_dir: Path = Path("runs/dpo"), wandb_project: str | None = None,
         seed: int = 0) -> dict[str, float]:
    """Train; returns the last step's metrics."""
    service = tinker.ServiceClient(base_url=base_url)
    training = service.create_lora_training_client(base_model=base_model, rank=rank, seed=seed).result()
    renderer = get_renderer(recommended_renderer_name(base_model), training.get_tokenizer())
    # laid out chosen, rejected, chosen, rejected, ...: datum 2i is pair i's chosen reply
    data = [datum for pair in PAIRS for datum in pair_datums(renderer, *pair)]

    # reference: the fresh adapter is zero, so this forward is the base model's
    forward = training.forward(data, "cross_entropy").result()
    reference = torch.stack([
        reply_logprob(datum, output["logprobs"].to_torch())
        for datum, output in zip(data, forward.loss_fn_outputs, strict=True)
    ])

    def dpo_loss(batch: list[types.Datum], logprobs_list: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        # called by the SDK with the policy's per-token logprobs of every datum, in order
        policy = torch.stack([reply_logprob(d, lp) for d, lp in zip(batch, logprobs_list, strict=True)])
        log_ratio = policy - reference.to(policy.dtype)
        chosen_ratio, rejected_ratio = log_ratio[0::2], log_ratio[1::2]
        margin = beta * (chosen_ratio - rejected_ratio)
        loss = -F.logsigmoid(margin).mean()
        metrics = {
            "dpo_loss": loss.item(),
            # a tie counts as wrong: at step 0 policy = reference, every margin is 0, accuracy 0
            "accuracy": (margin > 0).float().mean().item(),
            "margin": margin.mean().item(),
        }
        return loss, metrics

    config = {"base_model": base_model, "pairs": len(PAIRS), "steps": steps, "beta": beta, "learning_rate": lr,
              "lora_rank": rank, "seed": seed}
    metrics: dict[str, float] = {}
    with Tracker(log_dir, config, wandb_project=wandb_project, wandb_run_name="dpo", total_steps=steps) as tracker:
        tracker.truncate_after(-1)  # a rerun in the same folder starts over
        for step in range(steps):
            started = time.perf_counter()
            # submit both before waiting: the optimizer step queues behind the custom backward
            forward_backward = training.forward_backward_custom(data, dpo_loss)
            optim = training.optim_step(types.AdamParams(learning_rate=lr))
            result = forward_backward.result()
            optim.result()
            # the callback's metrics come back in the result (before the step: this step's loss)
            metrics = {LOSS: result.metrics["dpo_loss"], ACCURACY: result.metrics["accuracy"],
                       "margin": result.metrics["margin"], STEP_TIME_S: time.perf_counter() - started}
            tracker.log(step, metrics)
        png = tracker.close()
    print(f"curves:  {png}")
    saved = training.save_weights_for_sampler("dpo-final").result()
    print(f"sampler checkpoint: {saved.path}")
    service.close("success").result()
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("TINKER_BASE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--base-model", default="anvil/tiny-qwen3")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--beta", type=float, default=0.1, help="how strongly the policy may move from the reference")
    # the tiny model's rate in examples/demo.py; real models want far less (rl.hyperparams.get_lr)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--log-dir", type=Path, default=Path("runs/dpo"))
    parser.add_argument("--wandb-project", default=None, help="also log to this W&B project")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.base_url, args.base_model, args.steps, args.beta, args.lr, args.rank, args.log_dir,
         args.wandb_project, args.seed)
