"""The renderer contract: what a conversation looks like, what a renderer promises to do with it.

Messages are plain dicts in the Hugging Face / OpenAI chat shape, so that one conversation file
can be fed both to a renderer and to `tokenizer.apply_chat_template` and the results compared.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NotRequired, Protocol, Required, TypedDict

import tinker


class ToolCallFunction(TypedDict):
    name: str
    # a JSON object; the Qwen3 template also accepts an already-serialised JSON string
    arguments: dict[str, Any] | str


class ToolCall(TypedDict, total=False):
    type: str  # always "function"
    id: str
    function: Required[ToolCallFunction]


class Message(TypedDict, total=False):
    role: Required[str]  # "system" | "user" | "assistant" | "tool" (which ones a renderer takes varies)
    content: Required[str | None]
    # the model's thinking before its answer (Qwen3); the key the Qwen3 template itself reads
    reasoning_content: NotRequired[str]
    tool_calls: NotRequired[list[ToolCall]]
    # read only with TrainOnWhat.CUSTOMIZED: whether this message's tokens get weight 1
    trainable: NotRequired[bool]


# A tool definition as the Qwen templates print it: a JSON-schema function description.
ToolSpec = dict[str, Any]


class TrainOnWhat(StrEnum):
    """Which tokens of a supervised example get weight 1 (all others get 0).

    A message's trained tokens are its content and the end-of-turn marker that closes it; the
    role header before it is prompt. ALL_TOKENS trains on everything, framing included.
    """

    LAST_ASSISTANT_MESSAGE = "last_assistant_message"
    # every assistant message after the last user message (tool-calling steps included)
    LAST_ASSISTANT_TURN = "last_assistant_turn"
    ALL_ASSISTANT_MESSAGES = "all_assistant_messages"
    ALL_MESSAGES = "all_messages"
    ALL_TOKENS = "all_tokens"
    # each message's own `trainable` flag, which every message must then carry
    CUSTOMIZED = "customized"


# "stop": the renderer's end-of-turn token or stop string ended the response;
# "eos": the tokenizer's end-of-text token ended it (the model closed the document, not the turn);
# "malformed": neither was reached (cut off by max_tokens) or the text breaks the format.
ResponseEnding = Literal["stop", "eos", "malformed"]


@dataclass(frozen=True)
class ParsedResponse:
    message: Message
    ending: ResponseEnding
    # why the response is malformed, for logs; None when it is not
    problem: str | None = None

    @property
    def is_well_formed(self) -> bool:
        return self.ending != "malformed"


class Renderer(Protocol):
    """Turns conversations into the exact tokens a model family was trained on, and back."""

    name: str

    def build_generation_prompt(
        self, messages: Sequence[Message], prefill: str | None = None, *, tools: Sequence[ToolSpec] | None = None
    ) -> tinker.ModelInput:
        """Tokens of the conversation followed by the header of a new assistant turn.

        `prefill` is text the assistant turn starts with; the sampled tokens continue it (and do
        not repeat it).
        """
        ...

    def build_supervised_example(
        self,
        messages: Sequence[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        *,
        tools: Sequence[ToolSpec] | None = None,
    ) -> tuple[tinker.ModelInput, list[float]]:
        """Tokens of the whole conversation and one weight per token (1.0 trained, 0.0 not)."""
        ...

    def get_stop_sequences(self) -> list[int] | list[str]:
        """What the sampler should stop on: token ids, or strings for formats without them."""
        ...

    def parse_response(self, tokens: Sequence[int]) -> ParsedResponse:
        """The assistant message encoded by sampled `tokens`, and how the response ended."""
        ...
