"""Chat requests to renderer conversations, and a reply's text back to an OpenAI assistant message.

A conversation renders with the renderer recommended for the model (renderers/registry.py), or
the one a request names in its `renderer` field. The reply is read the way that renderer's own
`parse_response` reads it (Qwen3's `<think>` block becomes `reasoning_content`, Qwen's
`<tool_call>` blocks become `tool_calls`, through renderers/qwen_tools.py), but incrementally:
`ReplyStream` gives out reasoning and content as the text arrives, holding back only what the rest
of the reply may still turn into something else, so a streamed reply concatenates to the message
returned at once for the same tokens.
"""

import json
import uuid
from dataclasses import dataclass

from gateway.openai_errors import OpenAIError
from gateway.openai_wire import ChatMessageWire, FunctionCallOut, ToolCallOut
from renderers.qwen3 import THINK_CLOSE, THINK_OPEN
from renderers.qwen_tools import TOOL_CALL_OPEN, split_tool_calls
from renderers.types import Message, ToolSpec

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class ReplyFormat:
    """What a renderer's replies may hold besides plain content."""

    thinking: bool = False  # a reply may open with a <think>…</think> block
    tool_calls: bool = False  # <tool_call> blocks after the content
    leading_space: bool = False  # one space after the speaker's colon, not part of the content


REPLY_FORMATS = {
    "qwen3": ReplyFormat(thinking=True, tool_calls=True),
    # the prompt itself closes an empty thinking block: the reply is content from its first token
    "qwen3_disable_thinking": ReplyFormat(tool_calls=True),
    "qwen3_instruct": ReplyFormat(tool_calls=True),
    "qwen2_5": ReplyFormat(tool_calls=True),
    "role_colon": ReplyFormat(leading_space=True),
}


def reply_format(renderer_name: str) -> ReplyFormat:
    return REPLY_FORMATS.get(renderer_name, ReplyFormat())


def renderer_messages(messages: list[ChatMessageWire]) -> list[Message]:
    """OpenAI chat messages as renderer messages, every field checked (developer → system)."""
    if not messages:
        raise OpenAIError("messages must hold at least one message", param="messages")
    converted = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if message.role not in ROLES:
            raise OpenAIError(
                f"{where}.role must be one of {', '.join(ROLES)}; got {message.role!r}", param=f"{where}.role"
            )
        role = "system" if message.role == "developer" else message.role
        content = _text_content(message.content, where)
        out: Message = {"role": role, "content": content}
        if message.tool_calls:
            if role != "assistant":
                raise OpenAIError(f"{where}: only assistant messages carry tool_calls", param=f"{where}.tool_calls")
            out["tool_calls"] = [_tool_call_in(call, f"{where}.tool_calls[{j}]") for j, call in enumerate(message.tool_calls)]
        elif content is None:
            raise OpenAIError(f"{where} ({message.role}) has no content", param=f"{where}.content")
        if message.reasoning_content is not None:
            if role != "assistant":
                raise OpenAIError(f"{where}: only assistant messages carry reasoning_content", param=f"{where}.reasoning_content")
            out["reasoning_content"] = message.reasoning_content
        converted.append(out)
    return converted


def _text_content(content: str | list[dict] | None, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise OpenAIError(
                f"{where}.content[{j}]: only text parts ({{'type': 'text', 'text': ...}}) are supported",
                param=f"{where}.content[{j}]",
            )
        texts.append(part["text"])
    # as vLLM joins text parts, so a conversation renders the same on both servers
    return "\n".join(texts)


def _tool_call_in(call, where: str) -> dict:
    if call.type != "function":
        raise OpenAIError(f"{where}.type must be 'function'", param=f"{where}.type")
    try:
        arguments = json.loads(call.function.arguments)
    except json.JSONDecodeError as error:
        raise OpenAIError(f"{where}.function.arguments is not JSON: {error}", param=f"{where}.function.arguments") from None
    if not isinstance(arguments, dict):
        raise OpenAIError(f"{where}.function.arguments must be a JSON object", param=f"{where}.function.arguments")
    out = {"type": "function", "function": {"name": call.function.name, "arguments": arguments}}
    if call.id is not None:
        out["id"] = call.id
    return out


def tool_specs(tools: list[dict] | None) -> list[ToolSpec] | None:
    """The request's tools as given (the Qwen templates print each one as JSON, key order included)."""
    if not tools:
        return None
    for index, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise OpenAIError(
                f"tools[{index}] must look like {{'type': 'function', 'function': {{'name': ..., 'parameters': ...}}}}",
                param=f"tools[{index}]",
            )
    return tools


@dataclass(frozen=True)
class ReplyView:
    reasoning: str
    content: str
    tool_calls: list[ToolCallOut] | None = None


class ReplyStream:
    """A reply's text, as it arrives, split into reasoning and content (and tool calls at the end)."""

    def __init__(self, fmt: ReplyFormat, parse_tool_calls: bool):
        self._fmt = fmt
        self._parse_tool_calls = parse_tool_calls and fmt.tool_calls
        self._text = ""
        self.sent = ReplyView("", "")

    def push(self, text: str) -> ReplyView:
        """Take more of the reply's text; return the reasoning and content that became certain."""
        self._text += text
        return self._hand_out(self._view(final=False))

    def finish(self, text: str = "") -> ReplyView:
        """The rest of the reply, with its tool calls, once its text is complete."""
        self._text += text
        return self._hand_out(self._view(final=True))

    def _hand_out(self, view: ReplyView) -> ReplyView:
        # every view extends the previous one (tested), so a delta is what was added
        reasoning = view.reasoning[len(self.sent.reasoning) :] if view.reasoning.startswith(self.sent.reasoning) else ""
        content = view.content[len(self.sent.content) :] if view.content.startswith(self.sent.content) else ""
        self.sent = ReplyView(self.sent.reasoning + reasoning, self.sent.content + content)
        return ReplyView(reasoning, content, view.tool_calls)

    def _view(self, final: bool) -> ReplyView:
        text = self._text
        reasoning, content = "", text
        if self._fmt.thinking:
            close = text.find(THINK_CLOSE)
            if text.startswith(THINK_OPEN):
                inner = text[len(THINK_OPEN) :]
                close = inner.find(THINK_CLOSE)
                if close >= 0:
                    reasoning, content = inner[:close].strip("\n"), inner[close + len(THINK_CLOSE) :].lstrip("\n")
                elif final:  # cut off while thinking: all of it is reasoning
                    return ReplyView(inner.strip("\n"), "")
                else:
                    # newlines before </think> are not part of the reasoning
                    return ReplyView(_held(inner.lstrip("\n"), THINK_CLOSE).rstrip("\n"), "")
            elif close >= 0:
                # thinking whose <think> the model left out, read as the Qwen3 parser reads it
                before = text[:close].rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
                reasoning, content = before, text[close + len(THINK_CLOSE) :].lstrip("\n")
            elif not final:
                # held until the reply ends or shows a </think>, which would make all of it thinking;
                # a Qwen3 reply opens with <think>, so only a malformed one waits here
                return ReplyView("", "")
        if self._fmt.leading_space:
            if not final and content == "":
                return ReplyView(reasoning, "")
            content = content.removeprefix(" ")
        if not self._parse_tool_calls:
            return ReplyView(reasoning, content)
        if final:
            before, calls, problem = split_tool_calls(content)
            if calls and problem is None:
                return ReplyView(reasoning, before, [_tool_call_out(call) for call in calls])
            return ReplyView(reasoning, content)  # not a well-formed call: plain text, as written
        # the newline before a first <tool_call> belongs to the call's framing, not the content
        at = content.find(TOOL_CALL_OPEN)
        if at >= 0:
            return ReplyView(reasoning, content[:at].rstrip("\n"))
        return ReplyView(reasoning, _held(content, TOOL_CALL_OPEN).rstrip("\n"))


def _held(text: str, marker: str) -> str:
    """`text` without an end that may be the beginning of `marker`."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:length]):
            return text[:-length]
    return text


def _tool_call_out(call: dict) -> ToolCallOut:
    function = call["function"]
    return ToolCallOut(
        id=f"call_{uuid.uuid4().hex[:24]}",
        function=FunctionCallOut(name=function["name"], arguments=json.dumps(function["arguments"], ensure_ascii=False)),
    )
