"""How much one request, and one user, may ask of the server.

A single tenant must not be able to take the machine: a 10^6-token datum, or 1024 samples of 2000
tokens, is legal protocol but holds the trainer or the sampler for minutes while everyone else
waits. The limits have defaults that leave a tiny model's CPU box responsive and flags to raise
them on real hardware; a request over one fails as a user error naming the limit and its flag.
"""

from dataclasses import dataclass

import numpy as np

from gateway.errors import UserError


# a forward_backward larger than this runs as pieces of at most this many tokens, one per press
# round, so other models' work is not held up behind it for the whole pass (gateway/train_pieces.py)
TRAIN_PIECE_TOKENS = 16_384


@dataclass(frozen=True)
class Limits:
    # tokens in one forward_backward / forward request, all datums together
    max_train_tokens: int = 131_072
    # num_samples × max_tokens of one sampling request: the tokens it may generate
    max_sample_tokens: int = 131_072
    # training models one user may have loaded at once (unload_model or ending a session frees them)
    max_models_per_user: int = 32
    # a request body after decompression
    max_body_bytes: int = 256 << 20


def check_train_lengths(lengths: list[int], max_context: int, limits: Limits) -> None:
    """`lengths`: tokens of each datum of one forward_backward request."""
    if lengths and max(lengths) > max_context:
        i = int(np.argmax(lengths))
        raise UserError(
            f"data[{i}] has {lengths[i]} tokens; the model's context is {max_context} tokens"
        )
    total = sum(lengths)
    if total > limits.max_train_tokens:
        raise UserError(
            f"data holds {total} tokens; one forward_backward may hold at most {limits.max_train_tokens} "
            "(split it into several requests, or raise anvil serve --max-train-tokens)"
        )


def check_sample_size(num_samples: int, max_tokens: int, limits: Limits) -> None:
    if num_samples * max_tokens > limits.max_sample_tokens:
        raise UserError(
            f"num_samples × max_tokens = {num_samples} × {max_tokens} = {num_samples * max_tokens} tokens; "
            f"one sampling request may generate at most {limits.max_sample_tokens} "
            "(ask fewer samples or fewer tokens per request, or raise anvil serve --max-sample-tokens)"
        )


def check_model_count(loaded: int, limits: Limits) -> None:
    """`loaded`: the user's training models loaded now, before the one asked for."""
    if loaded >= limits.max_models_per_user:
        raise UserError(
            f"you have {loaded} training models loaded, the most one user may hold "
            f"(--max-models-per-user {limits.max_models_per_user}); end sessions you no longer use "
            "(ServiceClient.close) or unload models (POST /api/v1/unload_model)"
        )
