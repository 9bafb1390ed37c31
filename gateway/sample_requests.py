"""Checks a sampling request and turns it into the sampler's SampleWork."""

from anvil.types import MAX_TOPK_PROMPT_LOGPROBS, SampleWork
from gateway import wire
from gateway.errors import UserError
from gateway.service import BaseModelInfo

# used when a request leaves max_tokens out
DEFAULT_MAX_TOKENS = 256
MAX_NUM_SAMPLES = 1024


def sample_work(body: wire.Sample, base: BaseModelInfo) -> SampleWork:
    prompt = _prompt_tokens(body.prompt)
    for token in prompt:
        if not 0 <= token < base.vocab_size:
            raise UserError(f"prompt has token id {token} outside the vocabulary [0, {base.vocab_size})")
    params = body.sampling_params
    max_tokens = params.max_tokens if params.max_tokens is not None else DEFAULT_MAX_TOKENS
    if max_tokens <= 0:
        raise UserError(f"sampling_params.max_tokens must be >= 1, got {max_tokens}")
    if len(prompt) + max_tokens > base.max_context:
        raise UserError(
            f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the context of "
            f"{base.name} ({base.max_context} tokens)"
        )
    if not 1 <= body.num_samples <= MAX_NUM_SAMPLES:
        raise UserError(f"num_samples must be between 1 and {MAX_NUM_SAMPLES}, got {body.num_samples}")
    if params.temperature < 0:
        raise UserError(f"sampling_params.temperature must be >= 0, got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise UserError(f"sampling_params.top_p must be in (0, 1], got {params.top_p}")
    if params.top_k == 0 or params.top_k < -1:
        raise UserError(f"sampling_params.top_k must be -1 (no limit) or >= 1, got {params.top_k}")
    if not 0 <= body.topk_prompt_logprobs <= MAX_TOPK_PROMPT_LOGPROBS:
        raise UserError(
            f"topk_prompt_logprobs must be between 0 and {MAX_TOPK_PROMPT_LOGPROBS}, got {body.topk_prompt_logprobs}"
        )
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
        top_k=params.top_k,
        seed=params.seed,
        stop_strings=stop_strings,
        stop_tokens=stop_tokens,
        prompt_logprobs=body.prompt_logprobs,
        topk_prompt_logprobs=body.topk_prompt_logprobs,
    )


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
