"""Small builders for tests that drive anvil through the official tinker SDK."""

import os

import numpy as np
import tinker
from tinker import types

TINY = "anvil/tiny-qwen3"
API_KEY = "tml-anvil-tests"
# a real model id served by a local folder (here the tiny model), as `--model` allows
ALIAS_MODEL = "Qwen/Qwen3-8B"
# the sampling engine test servers run: auto (vLLM where installed) unless a run asks otherwise
SAMPLER_ENGINE = os.environ.get("ANVIL_TEST_SAMPLER_ENGINE", "auto")

# Parity tests run at both base precisions (`anvil serve --precision`). At fp32 the trainer and
# the sampler agree to float32 rounding; at bf16 every matmul over the base weights rounds to 8
# significant bits, in a different order on each engine, so logprobs of the same tokens differ by
# a few hundredths: over 256 sampled tokens at most 0.038 on the tiny model and 0.068 on the 103M
# one (`python -m bench.precision_parity`, docs/training.md).
PRECISIONS = ("fp32", "bf16")
SAMPLER_PARITY_ATOL = {"fp32": 1e-3, "bf16": 0.1}


def sft_datum(tokens: list[int], weights: list[float] | None = None) -> types.Datum:
    """Next-token datum: input tokens[:-1], targets tokens[1:]."""
    n = len(tokens) - 1
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": np.asarray(tokens[1:], dtype=np.int64),
            "weights": np.asarray(weights if weights is not None else [1.0] * n, dtype=np.float32),
        },
    )


def new_trainer(service_client: tinker.ServiceClient, rank: int = 8, seed: int = 0, **kwargs) -> tinker.TrainingClient:
    return service_client.create_lora_training_client(base_model=TINY, rank=rank, seed=seed, **kwargs).result()


def logprobs_of(output: types.ForwardBackwardOutput) -> list[np.ndarray]:
    return [np.asarray(o["logprobs"].to_numpy()) for o in output.loss_fn_outputs]
