"""Checks the parameters of an OpenAI request and turns them into the sampler's SampleWork.

Every parameter is either supported, accepted because it changes nothing anvil computes, or
refused with a 400 that names it: never silently ignored when it would change the answer.
"""

from anvil.types import MAX_TOPK_SAMPLE_LOGPROBS, SampleWork
from gateway.openai_errors import OpenAIError
from gateway.openai_wire import ChatCompletionRequest, CompletionRequest, SamplingFields
from gateway.sample_requests import DEFAULT_MAX_TOKENS, MIN_TEMPERATURE, top_k_within
from gateway.service import BaseModelInfo
from gateway.wire import MAX_NUM_SAMPLES

# OpenAI parameters these routes do not implement (the engines have no such control)
UNSUPPORTED_CHAT = (
    "audio", "prediction", "reasoning_effort", "web_search_options", "functions", "function_call",
    "verbosity", "prompt_cache_key", "safety_identifier",
)
UNSUPPORTED_COMPLETIONS = ("prompt_cache_key", "safety_identifier")
MAX_STOP_STRINGS = 16
MAX_SEED = 2**62


def check_extra_fields(body: SamplingFields, unsupported: tuple[str, ...]) -> None:
    for name in body.model_extra or {}:
        if name in unsupported:
            raise OpenAIError(f"{name} is not supported by this server", param=name, code="unsupported_parameter")
        raise OpenAIError(f"unrecognized request argument: {name}", param=name, code="unknown_parameter")


def check_chat_params(body: ChatCompletionRequest) -> None:
    check_extra_fields(body, UNSUPPORTED_CHAT)
    _check_common(body)
    if body.top_logprobs is not None:
        if not 0 <= body.top_logprobs <= MAX_TOPK_SAMPLE_LOGPROBS:
            raise OpenAIError(f"top_logprobs must be between 0 and {MAX_TOPK_SAMPLE_LOGPROBS}", param="top_logprobs")
        if body.top_logprobs > 0 and not body.logprobs:
            raise OpenAIError("top_logprobs needs logprobs: true", param="top_logprobs")
    if body.response_format not in (None, {"type": "text"}):
        raise OpenAIError(
            "response_format other than {'type': 'text'} is not supported (no constrained decoding)",
            param="response_format", code="unsupported_parameter",
        )
    if body.tool_choice not in (None, "auto", "none"):
        raise OpenAIError(
            "tool_choice must be 'auto' or 'none': forcing a tool call needs constrained decoding, which this server lacks",
            param="tool_choice", code="unsupported_parameter",
        )
    if body.modalities not in (None, ["text"]):
        raise OpenAIError("only the text modality is supported", param="modalities", code="unsupported_parameter")
    if body.max_tokens is not None and body.max_completion_tokens is not None and body.max_tokens != body.max_completion_tokens:
        raise OpenAIError("max_tokens and max_completion_tokens differ; give one of them", param="max_completion_tokens")


def check_completion_params(body: CompletionRequest) -> None:
    check_extra_fields(body, UNSUPPORTED_COMPLETIONS)
    _check_common(body)
    if body.logprobs is not None and not 0 <= body.logprobs <= MAX_TOPK_SAMPLE_LOGPROBS:
        raise OpenAIError(f"logprobs must be between 0 and {MAX_TOPK_SAMPLE_LOGPROBS}", param="logprobs")
    if body.echo:
        raise OpenAIError("echo is not supported by this server", param="echo", code="unsupported_parameter")
    if body.suffix:
        raise OpenAIError("suffix is not supported by this server", param="suffix", code="unsupported_parameter")
    if body.best_of is not None and body.best_of != (body.n or 1):
        raise OpenAIError("best_of other than n is not supported by this server", param="best_of", code="unsupported_parameter")


def _check_common(body: SamplingFields) -> None:
    if body.n is not None and not 1 <= body.n <= MAX_NUM_SAMPLES:
        raise OpenAIError(f"n must be between 1 and {MAX_NUM_SAMPLES}, got {body.n}", param="n")
    if body.temperature is not None and body.temperature < 0:
        raise OpenAIError(f"temperature must be >= 0, got {body.temperature}", param="temperature")
    if body.temperature is not None and 0 < body.temperature < MIN_TEMPERATURE:
        raise OpenAIError(f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}, got {body.temperature}", param="temperature")
    if body.top_p is not None and not 0 < body.top_p <= 1:
        raise OpenAIError(f"top_p must be in (0, 1], got {body.top_p}", param="top_p")
    if body.top_k is not None and (body.top_k == 0 or body.top_k < -1):
        raise OpenAIError(f"top_k must be -1 (no limit) or >= 1, got {body.top_k}", param="top_k")
    if body.max_tokens is not None and body.max_tokens < 1:
        raise OpenAIError(f"max_tokens must be >= 1, got {body.max_tokens}", param="max_tokens")
    max_completion_tokens = getattr(body, "max_completion_tokens", None)
    if max_completion_tokens is not None and max_completion_tokens < 1:
        raise OpenAIError(f"max_completion_tokens must be >= 1, got {max_completion_tokens}", param="max_completion_tokens")
    if body.seed is not None and not 0 <= body.seed <= MAX_SEED:
        raise OpenAIError(f"seed must be between 0 and 2**62, got {body.seed}", param="seed")
    stops = stop_strings(body)
    if len(stops) > MAX_STOP_STRINGS:
        raise OpenAIError(f"stop takes at most {MAX_STOP_STRINGS} strings", param="stop")
    if any(stop == "" for stop in stops):
        raise OpenAIError("stop strings must not be empty", param="stop")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name) not in (None, 0):
            raise OpenAIError(f"{name} is not supported by this server (only 0)", param=name, code="unsupported_parameter")
    if body.logit_bias:
        raise OpenAIError("logit_bias is not supported by this server", param="logit_bias", code="unsupported_parameter")
    if body.stream_options is not None and not body.stream:
        raise OpenAIError("stream_options is only allowed when stream is true", param="stream_options")


def stop_strings(body: SamplingFields) -> tuple[str, ...]:
    if body.stop is None:
        return ()
    return (body.stop,) if isinstance(body.stop, str) else tuple(body.stop)


def requested_max_tokens(body: SamplingFields) -> int | None:
    return body.max_tokens if body.max_tokens is not None else getattr(body, "max_completion_tokens", None)


def sample_work(
    body: SamplingFields,
    prompt: list[int],
    base: BaseModelInfo,
    *,
    prompt_param: str,
    stop_tokens: tuple[int, ...],
    stop_strings: tuple[str, ...],
    topk_sample_logprobs: int,
) -> SampleWork:
    """The work for one prompt of a checked request. `stop_tokens` end the reply (the renderer's
    end-of-turn tokens or the model's end-of-sequence tokens); `stop_strings` too, the caller's
    and the renderer's."""
    if not prompt:
        raise OpenAIError(f"{prompt_param} is empty", param=prompt_param)
    for token in prompt:
        if not 0 <= token < base.vocab_size:
            raise OpenAIError(
                f"{prompt_param} has token id {token} outside the vocabulary [0, {base.vocab_size})", param=prompt_param
            )
    room = base.max_context - len(prompt)
    if room <= 0:
        raise OpenAIError(
            f"{prompt_param} ({len(prompt)} tokens) fills the context of {base.name} ({base.max_context} tokens)",
            param=prompt_param, code="context_length_exceeded",
        )
    asked = requested_max_tokens(body)
    # without max_tokens a reply gets what /api/v1/asample gives, or the rest of the context
    max_tokens = asked if asked is not None else min(DEFAULT_MAX_TOKENS, room)
    if max_tokens > room:
        raise OpenAIError(
            f"{prompt_param} ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the context of "
            f"{base.name} ({base.max_context} tokens)",
            param=prompt_param, code="context_length_exceeded",
        )
    return SampleWork(
        prompt=prompt,
        num_samples=body.n or 1,
        max_tokens=max_tokens,
        temperature=body.temperature if body.temperature is not None else 1.0,
        top_p=body.top_p if body.top_p is not None else 1.0,
        top_k=top_k_within(body.top_k if body.top_k is not None else -1, base.vocab_size),
        seed=body.seed,
        stop_strings=stop_strings,
        stop_tokens=stop_tokens,
        topk_sample_logprobs=topk_sample_logprobs,
    )
