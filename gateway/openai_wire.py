"""Request and response bodies of the OpenAI API routes (/v1), as OpenAI clients send and read them.

Requests: every parameter OpenAI defines for these endpoints is a field, so that a supported one
is checked and an unsupported one is refused by name (gateway/openai_params.py); a parameter
OpenAI does not define is refused as unrecognised, as OpenAI does. NaN and Infinity are refused
where JSON would let them through. Messages keep unknown keys out of the way instead of refusing
them: clients echo back response messages with fields of their own (`refusal`, `annotations`).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIRequest(BaseModel):
    # extra fields are kept, then refused by name (gateway/openai_params.py)
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    include_usage: bool = False
    include_obfuscation: bool | None = None  # there is no obfuscation to switch on or off


class FunctionCallWire(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCallWire(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    type: str = "function"
    function: FunctionCallWire


class ChatMessageWire(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    role: str
    # a string or a list of content parts ({"type": "text", "text": ...})
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallWire] | None = None
    tool_call_id: str | None = None
    # the assistant's thinking, as anvil returns it (Qwen3)
    reasoning_content: str | None = None


class SamplingFields(OpenAIRequest):
    """The parameters chat and completions requests share."""

    model: str
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    # not OpenAI's: vLLM's extra parameters of the same names
    top_k: int | None = None
    return_tokens_as_token_ids: bool | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessageWire]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    # not OpenAI's: the renderer (renderers/registry.py) to render the conversation with
    renderer: str | None = None
    # OpenAI's, accepted and ignored: they change nothing anvil computes
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None


class CompletionRequest(SamplingFields):
    # a string, a list of strings, a list of token ids, or a list of such lists
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = None
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None


# responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprobWire(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobWire(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprobWire]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobWire] | None
    refusal: None = None


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ToolCallDelta(ToolCallOut):
    index: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallOut] | None = None
    refusal: None = None


FinishReason = Literal["stop", "length", "tool_calls"]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: one entry per token in each list."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] | None = None
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # not OpenAI's: what the model is
    base_model: str
    renderer: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
