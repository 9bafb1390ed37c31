"""Phi-3 / Phi-3.5 Instruct: <|user|>, <|assistant|>, <|system|> headers closed by <|end|>.

Mirrors the chat template in Phi-3.5-mini-instruct's tokenizer_config.json. Two of its quirks
matter for tokens: the header and <|end|> tokens are flagged rstrip, so the tokenizer swallows the
newline (and any leading whitespace of the content) that follows them; and a full conversation,
without a generation prompt, ends with the end-of-text token.
"""

from collections.abc import Sequence
from functools import partial

from renderers.messages import check_messages, content_of, reject_tool_use
from renderers.piece_renderer import PieceRenderer, parse_plain_response, token_ids
from renderers.pieces import Piece, special, text
from renderers.types import Message, ToolSpec

ROLES = ("system", "user", "assistant")
END, END_OF_TEXT = "<|end|>", "<|endoftext|>"
HEADERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}


def render_phi3(
    messages: Sequence[Message], tools: Sequence[ToolSpec] | None, add_generation_prompt: bool
) -> list[Piece]:
    check_messages(messages, ROLES, "phi3")
    reject_tool_use(messages, tools, "phi3")
    pieces: list[Piece] = []
    for index, message in enumerate(messages):
        content = content_of(message)
        if message["role"] == "system" and not content:
            continue  # the template leaves an empty system prompt out entirely
        pieces += [
            special(HEADERS[message["role"]], index),
            text("\n", index),
            text(content, index, is_body=True),
            special(END, index, is_body=True),
            text("\n"),
        ]
    if add_generation_prompt:
        pieces += [special(HEADERS["assistant"]), text("\n")]
    else:
        pieces += [special(END_OF_TEXT)]
    return pieces


def make_phi3_renderer(tokenizer) -> PieceRenderer:
    stop_ids, eos_ids = token_ids(tokenizer, [END]), token_ids(tokenizer, [END_OF_TEXT])
    return PieceRenderer(
        name="phi3",
        tokenizer=tokenizer,
        render=render_phi3,
        parse=partial(parse_plain_response, tokenizer, stop_ids, eos_ids),
        stop_sequences=stop_ids + eos_ids,
    )
