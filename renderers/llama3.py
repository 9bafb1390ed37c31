"""Llama 3 Instruct: the begin-of-text token, then one header-delimited block per message.

    <|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n

Content is stripped of surrounding whitespace, as Meta's template does. The Llama 3.1+ extras
(knowledge-cutoff system preamble, ipython tool role) are not rendered.
"""

from collections.abc import Sequence
from functools import partial

from renderers.messages import check_messages, content_of, reject_tool_use
from renderers.piece_renderer import PieceRenderer, parse_plain_response, token_ids
from renderers.pieces import Piece, special, text
from renderers.types import Message, ToolSpec

ROLES = ("system", "user", "assistant")
BEGIN_OF_TEXT, END_OF_TEXT = "<|begin_of_text|>", "<|end_of_text|>"
START_HEADER, END_HEADER, END_OF_TURN = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"


def _header(role: str, index: int | None = None) -> list[Piece]:
    return [special(START_HEADER, index), text(role, index), special(END_HEADER, index), text("\n\n", index)]


def render_llama3(
    messages: Sequence[Message], tools: Sequence[ToolSpec] | None, add_generation_prompt: bool
) -> list[Piece]:
    check_messages(messages, ROLES, "llama3")
    reject_tool_use(messages, tools, "llama3")
    pieces: list[Piece] = [special(BEGIN_OF_TEXT)]
    for index, message in enumerate(messages):
        pieces += _header(message["role"], index)
        pieces += [text(content_of(message).strip(), index, is_body=True), special(END_OF_TURN, index, is_body=True)]
    if add_generation_prompt:
        pieces += _header("assistant")
    return pieces


def make_llama3_renderer(tokenizer) -> PieceRenderer:
    stop_ids, eos_ids = token_ids(tokenizer, [END_OF_TURN]), token_ids(tokenizer, [END_OF_TEXT])
    return PieceRenderer(
        name="llama3",
        tokenizer=tokenizer,
        render=render_llama3,
        parse=partial(parse_plain_response, tokenizer, stop_ids, eos_ids),
        stop_sequences=stop_ids + eos_ids,
    )
