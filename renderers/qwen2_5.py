"""Qwen2.5 Instruct: ChatML turns, a default system prompt, Hermes-style tool calls.

Mirrors the chat template in Qwen2.5-Instruct's tokenizer_config.json.
"""

from collections.abc import Sequence
from functools import partial

from renderers.messages import check_messages, content_of, tool_calls_of
from renderers.piece_renderer import PieceRenderer, split_at_end, token_ids
from renderers.pieces import Piece, special, text
from renderers.qwen_tools import (
    IM_END,
    IM_START,
    split_tool_calls,
    to_json,
    tool_call_text,
    tool_result_pieces,
    tools_text,
)
from renderers.text_codec import decode_text
from renderers.types import Message, ParsedResponse, ToolSpec

ROLES = ("system", "user", "assistant", "tool")
# what the template puts in the system turn when the conversation brings none
DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def render_qwen2_5(
    messages: Sequence[Message], tools: Sequence[ToolSpec] | None, add_generation_prompt: bool
) -> list[Piece]:
    check_messages(messages, ROLES, "qwen2_5")
    has_system = messages[0]["role"] == "system"
    system_owner = 0 if has_system else None
    system_content = content_of(messages[0]) if has_system else DEFAULT_SYSTEM_PROMPT
    pieces: list[Piece] = [special(IM_START, system_owner), text("system\n", system_owner)]
    pieces += [text(system_content, system_owner, is_body=True)]
    if tools:
        pieces += [text("\n\n" + tools_text(tools))]
    pieces += [special(IM_END, system_owner, is_body=True), text("\n")]

    for index, message in enumerate(messages):
        role = message["role"]
        if role == "user" or (role == "system" and index > 0):
            pieces += [
                special(IM_START, index),
                text(role + "\n", index),
                text(content_of(message), index, is_body=True),
                special(IM_END, index, is_body=True),
                text("\n"),
            ]
        elif role == "assistant":
            pieces += _assistant_pieces(message, index)
        elif role == "tool":
            pieces += tool_result_pieces(messages, index)

    if add_generation_prompt:
        pieces += [special(IM_START), text("assistant\n")]
    return pieces


def _assistant_pieces(message: Message, index: int) -> list[Piece]:
    content = content_of(message)
    calls = tool_calls_of(message, index)
    # The template writes "assistant" + "\n" + content without tool calls, and "assistant" +
    # ("\n" + content if any) + "\n<tool_call>..." for each call with them. Either way the text
    # starts "assistant\n", which is the generation prompt; the rest is the trained body.
    body = content
    for call_index, call in enumerate(calls):
        if not isinstance(call["arguments"], dict):
            # the template would JSON-quote a string a second time, which no model was trained on
            raise TypeError(f"messages[{index}].tool_calls[{call_index}].function.arguments must be a dict for qwen2_5")
        if call_index > 0 or content:
            body += "\n"
        body += tool_call_text(call["name"], to_json(call["arguments"]))
    return [
        special(IM_START, index),
        text("assistant\n", index),
        text(body, index, is_body=True),
        special(IM_END, index, is_body=True),
        text("\n"),
    ]


def parse_qwen2_5_response(tokenizer, stop_ids, eos_ids, tokens) -> ParsedResponse:
    body, ending = split_at_end(tokens, stop_ids, eos_ids)
    problem = None if ending != "malformed" else "the response ended without <|im_end|> or <|endoftext|>"
    content, calls, tool_problem = split_tool_calls(decode_text(tokenizer, body))
    message: Message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    problem = problem or tool_problem
    return ParsedResponse(message, "malformed" if problem else ending, problem)


def make_qwen2_5_renderer(tokenizer) -> PieceRenderer:
    stop_ids, eos_ids = token_ids(tokenizer, [IM_END]), token_ids(tokenizer, ["<|endoftext|>"])
    return PieceRenderer(
        name="qwen2_5",
        tokenizer=tokenizer,
        render=render_qwen2_5,
        parse=partial(parse_qwen2_5_response, tokenizer, stop_ids, eos_ids),
        stop_sequences=stop_ids + eos_ids,
    )
