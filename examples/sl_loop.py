"""A minimal supervised fine-tuning loop on the raw tinker API.

Point it at any anvil server (TINKER_BASE_URL, default http://127.0.0.1:8000):
    python examples/sl_loop.py --steps 20
It renders a few chat conversations with the model's own chat template, trains a LoRA on the
assistant replies, saves the weights for sampling, and samples an answer.
"""

import argparse
import os

import tinker
from tinker import types

from renderers import TrainOnWhat, datum_from_example, get_renderer

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "user", "content": "What is two plus two?"},
     {"role": "assistant", "content": "Two plus two is four."}],
    [{"role": "user", "content": "Write a short poem about the sea."},
     {"role": "assistant", "content": "The sea is wide, the sea is deep."}],
]


def main(base_url: str | None = None, base_model: str = "anvil/tiny-qwen3", steps: int = 20, lr: float = 5e-3) -> float:
    service = tinker.ServiceClient(base_url=base_url)
    training = service.create_lora_training_client(base_model=base_model, rank=16, seed=0).result()
    tokenizer = training.get_tokenizer()
    renderer = get_renderer("hf_template", tokenizer)
    data = []
    for messages in CONVERSATIONS:
        model_input, weights = renderer.build_supervised_example(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        data.append(datum_from_example(model_input, weights))

    for step in range(steps):
        # submit both before waiting: the server runs them back to back
        fwdbwd = training.forward_backward(data, "cross_entropy")
        optim = training.optim_step(types.AdamParams(learning_rate=lr))
        loss = fwdbwd.result().metrics["loss:sum"]
        optim.result()
        print(f"step {step:3d}  loss:sum {loss:8.3f}")

    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = renderer.build_generation_prompt(CONVERSATIONS[0][:1])
    params = types.SamplingParams(max_tokens=24, temperature=0.0, stop=renderer.get_stop_sequences())
    reply = sampler.sample(prompt, num_samples=1, sampling_params=params).result().sequences[0]
    print("question:", CONVERSATIONS[0][0]["content"])
    print("answer:  ", renderer.parse_response(reply.tokens).message["content"])
    print("saved:   ", training.save_state("final").result().path)
    service.close("success").result()
    return loss


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("TINKER_BASE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--base-model", default="anvil/tiny-qwen3")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=5e-3)
    args = parser.parse_args()
    main(args.base_url, args.base_model, args.steps, args.lr)
