"""Qwen3: the hybrid-thinking chat format, with thinking on, off, or absent (Instruct-2507).

Mirrors the chat template shipped in Qwen3's tokenizer_config.json branch for branch, including
its treatment of history: an assistant message's thinking is kept only after the last real user
query (the multi-step tool-calling steps answering it) and dropped from earlier turns.
"""

from collections.abc import Sequence
from functools import partial
from typing import Literal

from renderers.messages import check_messages, content_of, tool_calls_of
from renderers.piece_renderer import PieceRenderer, split_at_end, token_ids
from renderers.pieces import Piece, special, text
from renderers.qwen_tools import (
    IM_END,
    IM_START,
    is_tool_response_text,
    split_tool_calls,
    to_json,
    tool_call_text,
    tool_result_pieces,
    tools_text,
)
from renderers.text_codec import decode_text
from renderers.types import Message, ParsedResponse, ToolSpec

# "hybrid": the model decides whether to think (the template's default);
# "disabled": the generation prompt closes an empty thinking block (enable_thinking=False);
# "absent": Qwen3-Instruct-2507 style, a model that never thinks.
ThinkingMode = Literal["hybrid", "disabled", "absent"]

ROLES = ("system", "user", "assistant", "tool")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINKING = "<think>\n\n</think>\n\n"


def render_qwen3(
    messages: Sequence[Message], tools: Sequence[ToolSpec] | None, add_generation_prompt: bool, thinking: ThinkingMode
) -> list[Piece]:
    check_messages(messages, ROLES, "qwen3")
    pieces: list[Piece] = []
    has_system = messages[0]["role"] == "system"
    if tools:
        pieces += [special(IM_START), text("system\n")]
        if has_system:
            pieces += [text(content_of(messages[0]) + "\n\n", 0, is_body=True)]
        pieces += [text(tools_text(tools)), special(IM_END, 0 if has_system else None, is_body=True), text("\n")]
    elif has_system:
        pieces += _turn_pieces("system", content_of(messages[0]), 0)

    last_query = _last_query_index(messages)
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "user" or (role == "system" and index > 0):
            pieces += _turn_pieces(role, content_of(message), index)
        elif role == "assistant":
            pieces += _assistant_pieces(message, index, index == len(messages) - 1, index > last_query, thinking)
        elif role == "tool":
            pieces += tool_result_pieces(messages, index)

    if add_generation_prompt:
        pieces += [special(IM_START), text("assistant\n")]
        if thinking == "disabled":
            pieces += [text(EMPTY_THINKING)]
    return pieces


def _turn_pieces(role: str, content: str, index: int) -> list[Piece]:
    return [
        special(IM_START, index),
        text(role + "\n", index),
        text(content, index, is_body=True),
        special(IM_END, index, is_body=True),
        text("\n"),
    ]


def _last_query_index(messages: Sequence[Message]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message["role"] == "user" and not is_tool_response_text(content_of(message)):
            return index
    return len(messages) - 1


def _assistant_pieces(
    message: Message, index: int, is_last: bool, after_last_query: bool, thinking: ThinkingMode
) -> list[Piece]:
    content = content_of(message)
    reasoning = message.get("reasoning_content")
    if thinking == "absent":
        if reasoning:
            raise ValueError(f"messages[{index}] has reasoning_content, but qwen3_instruct models do not think")
        reasoning = ""
    elif reasoning is None:
        reasoning = ""
        if THINK_CLOSE in content:  # thinking written inline in the content, as the template allows
            reasoning = content.split(THINK_CLOSE)[0].rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
            content = content.split(THINK_CLOSE)[-1].lstrip("\n")

    pieces = [special(IM_START, index), text("assistant\n", index)]
    if thinking != "absent" and after_last_query and (is_last or reasoning):
        thinking_text = reasoning.strip("\n")
        block = f"{THINK_OPEN}\n{thinking_text}\n{THINK_CLOSE}\n\n"
        if thinking == "disabled":
            if block != EMPTY_THINKING:
                raise ValueError(f"messages[{index}] has thinking, which qwen3_disable_thinking would render")
            # the generation prompt writes this block itself, so it is prompt, not trained output
            pieces += [text(block, index)]
        else:
            pieces += [text(block, index, is_body=True)]
        pieces += [text(content.lstrip("\n"), index, is_body=True)]
    else:
        pieces += [text(content, index, is_body=True)]

    for call_index, call in enumerate(tool_calls_of(message, index)):
        separator = "\n" if call_index > 0 or content else ""
        arguments = call["arguments"]
        arguments_json = arguments if isinstance(arguments, str) else to_json(arguments)
        pieces += [text(separator + tool_call_text(call["name"], arguments_json), index, is_body=True)]
    return pieces + [special(IM_END, index, is_body=True), text("\n")]


def parse_qwen3_response(tokenizer, stop_ids, eos_ids, thinking: ThinkingMode, tokens) -> ParsedResponse:
    body, ending = split_at_end(tokens, stop_ids, eos_ids)
    response = decode_text(tokenizer, body)
    problem = None if ending != "malformed" else "the response ended without <|im_end|> or <|endoftext|>"
    reasoning = ""
    if thinking != "absent":
        if THINK_CLOSE in response:
            reasoning = response.split(THINK_CLOSE)[0].rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
            response = response.split(THINK_CLOSE)[-1].lstrip("\n")
        elif THINK_OPEN in response:
            problem = problem or "a <think> block is never closed"
    content, calls, tool_problem = split_tool_calls(response)
    message: Message = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    problem = problem or tool_problem
    return ParsedResponse(message, "malformed" if problem else ending, problem)


def make_qwen3_renderer(tokenizer, thinking: ThinkingMode = "hybrid") -> PieceRenderer:
    names = {"hybrid": "qwen3", "disabled": "qwen3_disable_thinking", "absent": "qwen3_instruct"}
    stop_ids, eos_ids = token_ids(tokenizer, [IM_END]), token_ids(tokenizer, ["<|endoftext|>"])
    return PieceRenderer(
        name=names[thinking],
        tokenizer=tokenizer,
        render=partial(_render_with_mode, thinking),
        parse=partial(parse_qwen3_response, tokenizer, stop_ids, eos_ids, thinking),
        stop_sequences=stop_ids + eos_ids,
    )


def _render_with_mode(thinking: ThinkingMode, messages, tools, add_generation_prompt) -> list[Piece]:
    return render_qwen3(messages, tools, add_generation_prompt, thinking)
