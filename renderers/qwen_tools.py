"""Tool definitions, tool calls and tool results in the format shared by Qwen2.5 and Qwen3."""

import json
from collections.abc import Sequence
from typing import Any

from renderers.pieces import Piece, special, text
from renderers.types import Message, ToolCall, ToolSpec

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"

# The system-prompt text both families' templates print around the tool definitions.
_TOOLS_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)


def to_json(value: Any) -> str:
    # the templates' `tojson` filter, as transformers defines it (no ASCII escaping, default separators)
    return json.dumps(value, ensure_ascii=False)


def tools_text(tools: Sequence[ToolSpec]) -> str:
    return _TOOLS_INTRO + "".join("\n" + to_json(tool) for tool in tools) + _TOOLS_OUTRO


def tool_call_text(name: str, arguments_json: str) -> str:
    return f'{TOOL_CALL_OPEN}\n{{"name": "{name}", "arguments": {arguments_json}}}\n{TOOL_CALL_CLOSE}'


def tool_result_pieces(messages: Sequence[Message], index: int) -> list[Piece]:
    """A tool message; consecutive ones share one user turn, as in both families' templates."""
    starts_group = index == 0 or messages[index - 1]["role"] != "tool"
    ends_group = index == len(messages) - 1 or messages[index + 1]["role"] != "tool"
    pieces = []
    if starts_group:
        pieces += [special(IM_START, index), text("user", index)]
    pieces += [
        text("\n<tool_response>\n", index),
        text(messages[index].get("content") or "", index, is_body=True),
        text("\n</tool_response>", index, is_body=True),
    ]
    if ends_group:
        pieces += [special(IM_END, index, is_body=True), text("\n")]
    return pieces


def is_tool_response_text(content: str) -> bool:
    # how the Qwen3 template tells a user message that only relays tool output from a real query
    return content.startswith("<tool_response>") and content.endswith("</tool_response>")


def split_tool_calls(response: str) -> tuple[str, list[ToolCall], str | None]:
    """Invert the tool-call rendering: (content, calls, problem or None).

    Both templates write the content, then each call as a <tool_call> block, one newline between
    consecutive parts (none before the first call when the content is empty).
    """
    first = response.find(TOOL_CALL_OPEN)
    if first < 0:
        return response, [], None
    content = response[:first]
    if content.endswith("\n"):
        content = content[:-1]
    calls: list[ToolCall] = []
    rest = response[first:]
    while rest.startswith(TOOL_CALL_OPEN):
        close = rest.find(TOOL_CALL_CLOSE)
        if close < 0:
            return content, calls, "a <tool_call> block is never closed"
        body = rest[len(TOOL_CALL_OPEN) : close].strip()
        try:
            call = json.loads(body)
        except json.JSONDecodeError as error:
            return content, calls, f"tool call {len(calls)} is not valid JSON: {error}"
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("name"), str)
            or not isinstance(call.get("arguments"), dict)
        ):
            return content, calls, f'tool call {len(calls)} is not {{"name": str, "arguments": object}}'
        calls.append({"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}})
        rest = rest[close + len(TOOL_CALL_CLOSE) :]
        if rest.startswith("\n" + TOOL_CALL_OPEN):
            rest = rest[1:]
    if rest.strip():
        return content, calls, f"text after the last tool call: {rest[:40]!r}"
    return content, calls, None
