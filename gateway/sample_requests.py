"""Checks a sampling request and turns it into the sampler's SampleWork."""

from anvil.types import SampleWork
from gateway import wire
from gateway.errors import UserError
from gateway.service import BaseModelInfo

# used when a request leaves max_tokens out
DEFAULT_MAX_TOKENS = 256
# logits divided by a smaller temperature overflow float32 into NaN probabilities
MIN_TEMPERATURE = 1e-4


def sample_work(body: wire.Sample, base: BaseModelInfo) -> SampleWork:
    prompt = _prompt_tokens(body.prompt)
    for token in prompt:
        if not 0 <= token < base.vocab_size:
            raise UserError(f"prompt has token id {token} outside the vocabulary [0, {base.vocab_size})")
    params = body.sampling_params
    # non-finite numbers, negative counts and values beyond int64 are refused by gateway/wire.py
    max_tokens = params.max_tokens if params.max_tokens is not None else DEFAULT_MAX_TOKENS
    if len(prompt) + max_tokens > base.max_context:
        raise UserError(
            f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the context of "
            f"{base.name} ({base.max_context} tokens)"
        )
    if 0 < params.temperature < MIN_TEMPERATURE:
        raise UserError(
            f"sampling_params.temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}, got {params.temperature}",
            field="sampling_params.temperature",
        )
    if params.top_k == 0 or params.top_k < -1:
        raise UserError(f"sampling_params.top_k must be -1 (no limit) or >= 1, got {params.top_k}")
    unsupported = {
        "topk_sample_logprobs": body.topk_sample_logprobs > 0,
        "prompt_alt_tokens_k": body.prompt_alt_tokens_k > 0,
        "prompt_logprobs_last_n": body.prompt_logprobs_last_n is not None,
        "target_prompt_logprobs": body.target_prompt_logprobs is not None,
    }
    for name, asked in unsupported.items():
        if asked:
            raise UserError(f"{name} is not supported by this server yet")
    stop_strings, stop_tokens = _stops(params.stop, base.vocab_size)
    return SampleWork(
        prompt=prompt,
        num_samples=body.num_samples,
        max_tokens=max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=top_k_within(params.top_k, base.vocab_size),
        seed=params.seed,
        stop_strings=stop_strings,
        stop_tokens=stop_tokens,
        prompt_logprobs=body.prompt_logprobs,
        topk_prompt_logprobs=body.topk_prompt_logprobs,
    )


def top_k_within(top_k: int, vocab_size: int) -> int:
    """A top_k of the whole vocabulary or more keeps every token: it is no limit (-1), which no
    engine can take as a too-large integer."""
    return -1 if top_k >= vocab_size else top_k


def _prompt_tokens(prompt: wire.ModelInputWire) -> list[int]:
    tokens: list[int] = []
    for j, chunk in enumerate(prompt.chunks):
        if chunk.get("type", "encoded_text") != "encoded_text":
            raise UserError(f"prompt.chunks[{j}] is a {chunk.get('type')!r} chunk; only encoded_text is supported")
        piece = chunk.get("tokens")
        if not isinstance(piece, list) or not all(isinstance(t, int) for t in piece):
            raise UserError(f"prompt.chunks[{j}].tokens must be a list of integers")
        if not piece:
            raise UserError(f"prompt.chunks[{j}] is empty")
        tokens.extend(piece)
    if not tokens:
        raise UserError("prompt is empty")
    return tokens


def _stops(stop, vocab_size: int) -> tuple[tuple[str, ...] | None, tuple[int, ...] | None]:
    if stop is None:
        return None, None
    if isinstance(stop, str):
        stop = [stop]
    if all(isinstance(s, str) for s in stop):
        if any(s == "" for s in stop):
            raise UserError("sampling_params.stop strings must not be empty")
        return tuple(stop), ()
    if all(isinstance(s, int) for s in stop):
        for token in stop:
            if not 0 <= token < vocab_size:
                raise UserError(f"sampling_params.stop token {token} is outside the vocabulary [0, {vocab_size})")
        return (), tuple(stop)
    raise UserError("sampling_params.stop must be a string, a list of strings or a list of token ids")
