"""Supervised fine-tuning on a chat file: one conversation per line, in the Hugging Face / OpenAI shape.

    python examples/sft_chat.py --base-url http://127.0.0.1:8000 [--data examples/data/chat_sample.jsonl]

Each line of the file is `{"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}]}`.
The example renders every conversation with the renderer recommended for the base model (`qwen3`
for `anvil/tiny-qwen3`), so training sees the exact tokens the chat template writes, and trains
a LoRA on the assistant messages only (the loss weights are 0 on system and user text). It runs
a few epochs over shuffled batches, logs the loss of every step to --log-dir (config.json,
metrics.jsonl, curves.png; a W&B run too with --wandb-project), saves the weights for sampling,
prints their tinker:// path, and answers one question with them.

Pass the printed path to examples/sample_checkpoint.py --model-path to sample it again. With
the defaults (30 steps) it takes well under a minute on a 2-core CPU against the tiny model. The
tiny model's weights are random, so expect the loss to fall (from about 7 to below 5 per token),
not a fluent answer: its greedy reply is typically blank lines or empty.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinker
from tinker import types

from renderers import (
    TrainOnWhat,
    datum_from_example,
    get_renderer,
    recommended_renderer_name,
)
from rl.hyperparams import get_lr
from rl.metric_keys import LOSS, STEP_TIME_S
from rl.tracking import Tracker

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "chat_sample.jsonl"


def load_conversations(path: Path) -> list[list[dict]]:
    conversations = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        messages = json.loads(line).get("messages")
        if not messages:
            raise ValueError(f"{path}:{number}: expected {{\"messages\": [...]}}")
        conversations.append(messages)
    return conversations


def main(
    base_url: str | None = None,
    base_model: str = "anvil/tiny-qwen3",
    data: Path = DEFAULT_DATA,
    epochs: int = 10,
    batch_size: int = 8,
    lr: float | None = None,
    rank: int = 16,
    max_length: int = 512,
    log_dir: Path = Path("runs/sft_chat"),
    wandb_project: str | None = None,
    prompt: str = "What is the capital of France?",
    seed: int = 0,
) -> str:
    """Train, save, sample; returns the sampler checkpoint's tinker:// path."""
    if lr is None:
        # the published LoRA rule (rl/hyperparams.py); for anvil/tiny-qwen3 (hidden size 128) it
        # gives about 6.2e-4. Models it has no rule for need --lr.
        lr = get_lr(base_model)
    service = tinker.ServiceClient(base_url=base_url)
    training = service.create_lora_training_client(base_model=base_model, rank=rank, seed=seed).result()
    renderer_name = recommended_renderer_name(base_model)
    renderer = get_renderer(renderer_name, training.get_tokenizer())

    datums = []
    for messages in load_conversations(Path(data)):
        model_input, weights = renderer.build_supervised_example(messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
        datums.append(datum_from_example(model_input, weights, max_length=max_length))
    steps_per_epoch = (len(datums) + batch_size - 1) // batch_size
    total_steps = epochs * steps_per_epoch
    print(f"{len(datums)} conversations, renderer {renderer_name}, {total_steps} steps at lr {lr:.3g}")

    config = {"base_model": base_model, "data": str(data), "renderer": renderer_name, "epochs": epochs,
              "batch_size": batch_size, "learning_rate": lr, "lora_rank": rank, "seed": seed}
    rng = random.Random(seed)
    step = 0
    with Tracker(log_dir, config, wandb_project=wandb_project, wandb_run_name="sft-chat",
                 total_steps=total_steps) as tracker:
        # a rerun in the same folder starts over: its steps replace the old ones
        tracker.truncate_after(-1)
        for epoch in range(epochs):
            order = list(range(len(datums)))
            rng.shuffle(order)  # a new order every epoch
            for start in range(0, len(order), batch_size):
                started = time.perf_counter()
                batch = [datums[i] for i in order[start:start + batch_size]]
                # submit both before waiting: the server runs them back to back
                forward_backward = training.forward_backward(batch, "cross_entropy")
                optim = training.optim_step(types.AdamParams(learning_rate=lr))
                result = forward_backward.result()
                optim.result()
                # loss:sum adds up over every trained token; per token, batches of any size compare
                trained_tokens = sum(sum(d.loss_fn_inputs["weights"].data) for d in batch)
                tracker.log(step, {LOSS: result.metrics["loss:sum"] / max(1.0, trained_tokens),
                                   "epoch": float(epoch), STEP_TIME_S: time.perf_counter() - started})
                step += 1
        png = tracker.close()
    print(f"curves:  {png}")
    if tracker.wandb_dir is not None:
        print(f"W&B run: {tracker.wandb_dir}")

    # sampler weights: what create_sampling_client(model_path=...) and the OpenAI routes load
    saved_path = training.save_weights_for_sampler("sft-chat-final").result().path
    print(f"sampler checkpoint: {saved_path}")
    sampler = service.create_sampling_client(model_path=saved_path).result()
    params = types.SamplingParams(max_tokens=32, temperature=0.0, stop=renderer.get_stop_sequences())
    generation_prompt = renderer.build_generation_prompt([{"role": "user", "content": prompt}])
    reply = sampler.sample(generation_prompt, num_samples=1, sampling_params=params).result().sequences[0]
    print(f"question: {prompt}")
    print(f"answer:   {renderer.parse_response(reply.tokens).message['content']!r}")
    service.close("success").result()
    return saved_path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("TINKER_BASE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--base-model", default="anvil/tiny-qwen3")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="chat JSONL, one {\"messages\": [...]} per line")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="default: rl.hyperparams.get_lr(base model)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512, help="cap on the tokens of one conversation")
    parser.add_argument("--log-dir", type=Path, default=Path("runs/sft_chat"))
    parser.add_argument("--wandb-project", default=None, help="also log to this W&B project")
    parser.add_argument("--prompt", default="What is the capital of France?")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.base_url, args.base_model, args.data, args.epochs, args.batch_size, args.lr, args.rank,
         args.max_length, args.log_dir, args.wandb_project, args.prompt, args.seed)
