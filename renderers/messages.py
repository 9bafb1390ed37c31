"""Checks on incoming conversations and the choice of trained messages, shared by every renderer."""

from collections.abc import Collection, Sequence
from typing import Any

from renderers.types import Message, ToolCallFunction, TrainOnWhat


def check_messages(messages: Sequence[Message], roles: Collection[str], renderer_name: str) -> None:
    """Reject what a renderer cannot render faithfully, naming the message and the problem."""
    if not messages:
        raise ValueError("a conversation needs at least one message")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(f"messages[{index}] must be a dict, got {type(message).__name__}")
        role = message.get("role")
        if role not in roles:
            known = ", ".join(repr(r) for r in roles)
            raise ValueError(
                f"messages[{index}]: the {renderer_name} renderer does not know role {role!r}; it knows {known}"
            )
        content = message.get("content")
        has_tool_calls = bool(message.get("tool_calls"))
        if content is None and not has_tool_calls:
            raise ValueError(f"messages[{index}] ({role}) has no content")
        if content is not None and not isinstance(content, str):
            raise TypeError(f"messages[{index}].content must be a string, got {type(content).__name__}")
        if has_tool_calls and role != "assistant":
            raise ValueError(f"messages[{index}]: only assistant messages carry tool_calls, not {role!r}")
        reasoning = message.get("reasoning_content")
        if reasoning is not None and not isinstance(reasoning, str):
            raise TypeError(f"messages[{index}].reasoning_content must be a string, got {type(reasoning).__name__}")
        trainable = message.get("trainable")
        if trainable is not None and not isinstance(trainable, bool):
            raise TypeError(f"messages[{index}].trainable must be a bool, got {type(trainable).__name__}")


def content_of(message: Message) -> str:
    return message.get("content") or ""


def tool_calls_of(message: Message, index: int) -> list[ToolCallFunction]:
    """The calls of an assistant message, each unwrapped from the OpenAI `function` envelope."""
    calls = []
    for call_index, call in enumerate(message.get("tool_calls") or []):
        function: Any = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or "arguments" not in function:
            raise ValueError(
                f"messages[{index}].tool_calls[{call_index}] must look like "
                '{"type": "function", "function": {"name": str, "arguments": dict}}'
            )
        calls.append(function)
    return calls


def reject_tool_use(messages: Sequence[Message], tools, renderer_name: str) -> None:
    if tools:
        raise ValueError(f"the {renderer_name} renderer has no tool format; pass tools=None")
    for index, message in enumerate(messages):
        if message.get("tool_calls"):
            raise ValueError(f"messages[{index}] has tool_calls, which the {renderer_name} renderer cannot render")


def trained_message_indices(messages: Sequence[Message], train_on_what: TrainOnWhat) -> set[int]:
    train_on_what = TrainOnWhat(train_on_what)
    assistant_indices = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if train_on_what in (TrainOnWhat.ALL_MESSAGES, TrainOnWhat.ALL_TOKENS):
        return set(range(len(messages)))
    if train_on_what == TrainOnWhat.CUSTOMIZED:
        missing = [i for i, m in enumerate(messages) if "trainable" not in m]
        if missing:
            raise ValueError(
                f"train_on_what=customized needs a 'trainable' flag on every message; messages {missing} have none"
            )
        return {i for i, m in enumerate(messages) if m["trainable"]}
    if not assistant_indices:
        raise ValueError(f"train_on_what={train_on_what.value} needs an assistant message; the conversation has none")
    if train_on_what == TrainOnWhat.LAST_ASSISTANT_MESSAGE:
        return {assistant_indices[-1]}
    if train_on_what == TrainOnWhat.ALL_ASSISTANT_MESSAGES:
        return set(assistant_indices)
    # LAST_ASSISTANT_TURN: the assistant messages answering the last user message
    user_indices = [i for i, m in enumerate(messages) if m["role"] == "user"]
    last_user = user_indices[-1] if user_indices else -1
    turn = {i for i in assistant_indices if i > last_user}
    if not turn:
        raise ValueError("train_on_what=last_assistant_turn needs an assistant message after the last user message")
    return turn
