"""The OpenAI API (/v1): models, completions and chat completions, streamed or not.

Requests sample through the same scheduler, fleet and engines as /api/v1/asample; a streamed
response is sent token by token as the engine samples (Server-Sent Events, ending with
`data: [DONE]`). docs/openai.md lists every parameter.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from anvil.types import SampleDelta, SampleResult
from gateway.deps import BearerOwnerDep, ServiceDep
from gateway.openai_chat import ReplyStream, renderer_messages, reply_format, tool_specs
from gateway.openai_choices import ChatChoiceBuilder, CompletionChoiceBuilder, whole
from gateway.openai_errors import OpenAIError, error_of
from gateway.openai_models import BaseModelText, ModelTexts, ServedModel, list_models, resolve_model
from gateway.openai_params import check_chat_params, check_completion_params, sample_work, stop_strings
from gateway.openai_text import TextStream, TokenIdTexts
from gateway.quotas import check_sample_size
from gateway.openai_wire import (
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
    Usage,
)
from gateway.sample_scheduler import SampleJob
from gateway.service import Service
from renderers.types import Renderer

router = APIRouter()


@router.get("/models")
async def models(request: Request, service: ServiceDep, owner: BearerOwnerDep) -> ModelList:
    return await list_models(service, owner, _texts(request), request.app.state.started)


@router.get("/models/{model:path}")
async def model(model: str, request: Request, service: ServiceDep, owner: BearerOwnerDep) -> ModelCard:
    served = await resolve_model(service, owner, model)
    listed = (await list_models(service, owner, _texts(request), request.app.state.started)).data
    card = next((card for card in listed if card.id == model), None)
    if card is None:  # readable but not listed: a training checkpoint, or a path to a model folder
        texts = _texts(request)
        card = ModelCard(id=model, created=request.app.state.started, owned_by="anvil", base_model=served.base.name,
                         renderer=texts.default_renderer_name(served.base.name))
    return card


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request, service: ServiceDep, owner: BearerOwnerDep):
    check_chat_params(body)
    served = await resolve_model(service, owner, body.model)
    texts = _texts(request)
    text = await texts.text_of(served.base)
    renderer = await texts.renderer(served.base, body.renderer)
    messages = renderer_messages(body.messages)
    # tool_choice "none": the model is shown no tools, so it has none to call
    tools = tool_specs(body.tools) if body.tool_choice != "none" else None
    fmt = reply_format(renderer.name)
    if tools and not fmt.tool_calls:
        raise OpenAIError(f"the {renderer.name} renderer has no tool-call format", param="tools")
    try:
        prompt = renderer.build_generation_prompt(messages, tools=tools).to_ints()
    except (ValueError, TypeError) as exc:
        raise OpenAIError(f"messages cannot be rendered by the {renderer.name} renderer: {exc}", param="messages") from None
    end_tokens, renderer_stops = _renderer_stops(renderer, text)
    stops = stop_strings(body) + renderer_stops
    top_logprobs = (body.top_logprobs or 0) if body.logprobs else None
    work = sample_work(
        body, prompt, served.base, prompt_param="messages",
        stop_tokens=end_tokens, stop_strings=stops, topk_sample_logprobs=top_logprobs or 0,
    )
    check_sample_size(work.num_samples, work.max_tokens, service.settings.limits)
    builders = [
        ChatChoiceBuilder(
            index, TextStream(text.tokenizer, end_tokens, stops), ReplyStream(fmt, parse_tool_calls=bool(tools)),
            _token_texts(body, text), top_logprobs,
        )
        for index in range(work.num_samples)
    ]
    job = _job(owner, served, work)
    response_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        first, deltas = await _open_stream(service, job)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _chat_events(first, deltas, builders, response_id, created, body.model, len(prompt), include_usage)
        return _event_stream(events)
    result = await _sample(service, job)
    for builder, sequence in zip(builders, result.sequences, strict=True):
        builder.push(whole(builder.index, sequence))
    return ChatCompletion(
        id=response_id, created=created, model=body.model,
        choices=[builder.choice() for builder in builders],
        usage=_usage(len(prompt), builders),
    )


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request, service: ServiceDep, owner: BearerOwnerDep):
    check_completion_params(body)
    served = await resolve_model(service, owner, body.model)
    text = await _texts(request).text_of(served.base)
    prompts = _prompt_tokens(body.prompt, text)
    if body.stream and len(prompts) > 1:
        raise OpenAIError("stream takes one prompt; send the prompts as separate requests", param="prompt")
    stops = stop_strings(body)
    works = [
        sample_work(
            body, prompt, served.base, prompt_param="prompt" if len(prompts) == 1 else f"prompt[{i}]",
            stop_tokens=text.eos_ids, stop_strings=stops, topk_sample_logprobs=body.logprobs or 0,
        )
        for i, prompt in enumerate(prompts)
    ]
    n = works[0].num_samples
    check_sample_size(n * len(works), works[0].max_tokens, service.settings.limits)
    # OpenAI's order: the n choices of the first prompt, then those of the next
    builders = [
        CompletionChoiceBuilder(p * n + j, TextStream(text.tokenizer, text.eos_ids, stops), _token_texts(body, text), body.logprobs)
        for p in range(len(prompts))
        for j in range(n)
    ]
    prompt_tokens = sum(len(prompt) for prompt in prompts)
    response_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        first, deltas = await _open_stream(service, _job(owner, served, works[0]))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _completion_events(first, deltas, builders, response_id, created, body.model, prompt_tokens, include_usage)
        return _event_stream(events)
    results = await asyncio.gather(*(_sample(service, _job(owner, served, work)) for work in works))
    for p, result in enumerate(results):
        for j, sequence in enumerate(result.sequences):
            builder = builders[p * n + j]
            builder.push(whole(builder.index, sequence))
    return Completion(
        id=response_id, created=created, model=body.model,
        choices=[builder.choice() for builder in builders],
        usage=_usage(prompt_tokens, builders),
    )


def _texts(request: Request) -> ModelTexts:
    return request.app.state.texts


def _token_texts(body, text: BaseModelText):
    return TokenIdTexts(text.token_texts) if body.return_tokens_as_token_ids else text.token_texts


def _renderer_stops(renderer: Renderer, text: BaseModelText) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(tokens, strings) that end a reply: a renderer's end-of-turn tokens, or, for a format
    without special tokens, its stop strings and the model's end-of-sequence tokens."""
    stops = renderer.get_stop_sequences()
    if all(isinstance(stop, int) for stop in stops):
        return tuple(stops), ()
    return text.eos_ids, tuple(stops)


def _prompt_tokens(prompt, text: BaseModelText) -> list[list[int]]:
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise OpenAIError("prompt must not be an empty list", param="prompt")
    if all(isinstance(token, int) for token in prompt):
        return [list(prompt)]
    if all(isinstance(item, str) for item in prompt):
        return [text.tokenizer(item, add_special_tokens=True)["input_ids"] for item in prompt]
    return [list(item) for item in prompt]


def _job(owner: str, served: ServedModel, work) -> SampleJob:
    # one scheduler "session" per caller and model: its requests stick to one engine (warm prefix cache)
    return SampleJob(f"openai:{owner}:{served.name}", 0, served.base.name, served.adapter, work)


async def _sample(service: Service, job: SampleJob) -> SampleResult:
    try:
        return await service.sampling.sample(job)
    except Exception as exc:
        raise _engine_error(exc) from exc


async def _open_stream(service: Service, job: SampleJob) -> tuple[SampleDelta | None, AsyncIterator[SampleDelta]]:
    """The stream of `job` and its first delta: a request the engines refuse is then still an
    HTTP error, not an error event in a stream that has already begun."""
    deltas = service.sampling.stream(job)
    try:
        return await anext(deltas), deltas
    except StopAsyncIteration:
        return None, deltas
    except Exception as exc:
        await deltas.aclose()
        raise _engine_error(exc) from exc


def _engine_error(exc: Exception) -> Exception:
    # a SampleRejected is a user error already (gateway/errors.py answers it with a 400)
    if isinstance(exc, FileNotFoundError):
        return OpenAIError(f"the model's weights are gone: {exc}", status=404, param="model", code="model_not_found")
    return exc


async def _chat_events(
    first: SampleDelta | None,
    deltas: AsyncIterator[SampleDelta],
    builders: list[ChatChoiceBuilder],
    response_id: str,
    created: int,
    model: str,
    prompt_tokens: int,
    include_usage: bool,
) -> AsyncIterator[BaseModel | dict]:
    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=response_id, created=created, model=model, choices=choices, usage=usage)

    for builder in builders:
        yield chunk([ChatChunkChoice(index=builder.index, delta=ChatDelta(role="assistant", content=""))])
    async for delta in _chained(first, deltas):
        piece = builders[delta.index].push(delta)
        if piece is not None:
            yield chunk([piece])
    if include_usage:
        yield chunk([], _usage(prompt_tokens, builders))


async def _completion_events(
    first: SampleDelta | None,
    deltas: AsyncIterator[SampleDelta],
    builders: list[CompletionChoiceBuilder],
    response_id: str,
    created: int,
    model: str,
    prompt_tokens: int,
    include_usage: bool,
) -> AsyncIterator[BaseModel | dict]:
    async for delta in _chained(first, deltas):
        piece = builders[delta.index].push(delta)
        if piece is not None:
            yield Completion(id=response_id, created=created, model=model, choices=[piece], usage=None)
    if include_usage:
        yield Completion(id=response_id, created=created, model=model, choices=[], usage=_usage(prompt_tokens, builders))


async def _chained(first: SampleDelta | None, deltas: AsyncIterator[SampleDelta]) -> AsyncIterator[SampleDelta]:
    async with aclosing(deltas):
        if first is None:
            return
        yield first
        async for delta in deltas:
            yield delta


def _event_stream(events: AsyncIterator[BaseModel | dict]) -> StreamingResponse:
    async def sse() -> AsyncIterator[str]:
        async with aclosing(events):
            try:
                async for event in events:
                    body = event.model_dump_json() if isinstance(event, BaseModel) else event
                    yield f"data: {body}\n\n"
            except Exception as exc:  # deliberate: once streaming, an error can only be an event
                _, error = error_of(_engine_error(exc))
                yield f"data: {json.dumps(error)}\n\n"
                return
        yield "data: [DONE]\n\n"

    # no buffering by proxies: each event is sent as it is written
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)


def _usage(prompt_tokens: int, builders) -> Usage:
    completion_tokens = sum(builder.completion_tokens for builder in builders)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens)
