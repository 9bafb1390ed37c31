"""A plain-text dialogue format for base models, which have no chat tokens:

    System: Be brief.

    User: What is 2+2?

    Assistant: 4

    User:

The assistant learns to end its turn by writing the next "User:" header, which is the sampler's
stop string. Having no special tokens, this format cannot stop message text from imitating a turn
boundary; use a chat model's own renderer wherever one exists.
"""

from collections.abc import Sequence
from functools import partial

from renderers.messages import check_messages, content_of, reject_tool_use
from renderers.piece_renderer import PieceRenderer
from renderers.pieces import Piece, special, text
from renderers.text_codec import decode_text
from renderers.types import Message, ParsedResponse, ToolSpec

ROLES = ("system", "user", "assistant")
SPEAKERS = {"system": "System:", "user": "User:", "assistant": "Assistant:"}
TURN_SEPARATOR = "\n\n"
STOP_STRING = TURN_SEPARATOR + SPEAKERS["user"]


def render_role_colon(
    tokenizer, messages: Sequence[Message], tools: Sequence[ToolSpec] | None, add_generation_prompt: bool
) -> list[Piece]:
    check_messages(messages, ROLES, "role_colon")
    reject_tool_use(messages, tools, "role_colon")
    # whatever the tokenizer puts before any document (a begin-of-text token for Llama, nothing for Qwen)
    pieces = [
        special(token) for token in tokenizer.convert_ids_to_tokens(tokenizer.encode("", add_special_tokens=True))
    ]
    for index, message in enumerate(messages):
        role = message["role"]
        follows_assistant = index > 0 and messages[index - 1]["role"] == "assistant"
        if not (role == "user" and follows_assistant):  # else the assistant already wrote this header
            pieces.append(text((TURN_SEPARATOR if index > 0 else "") + SPEAKERS[role], index))
        pieces.append(text(" " + content_of(message), index, is_body=True))
        next_role = messages[index + 1]["role"] if index + 1 < len(messages) else None
        if role == "assistant" and (next_role == "user" or (next_role is None and not add_generation_prompt)):
            pieces.append(text(STOP_STRING, index, is_body=True))
    if add_generation_prompt:
        pieces.append(text(TURN_SEPARATOR + SPEAKERS["assistant"]))
    return pieces


def parse_role_colon_response(tokenizer, tokens: Sequence[int]) -> ParsedResponse:
    eos_id = tokenizer.eos_token_id
    ending = "malformed"
    if eos_id is not None and eos_id in tokens:
        tokens, ending = tokens[: list(tokens).index(eos_id)], "eos"
    response = decode_text(tokenizer, tokens, skip_special_tokens=True)
    stop = response.find(STOP_STRING)
    if stop >= 0:
        response, ending = response[:stop], "stop"
    content = response.removeprefix(" ")
    problem = None if ending != "malformed" else f"the response ended without {STOP_STRING!r} or the end-of-text token"
    return ParsedResponse({"role": "assistant", "content": content}, ending, problem)


def make_role_colon_renderer(tokenizer) -> PieceRenderer:
    return PieceRenderer(
        name="role_colon",
        tokenizer=tokenizer,
        render=partial(render_role_colon, tokenizer),
        parse=partial(parse_role_colon_response, tokenizer),
        stop_sequences=(STOP_STRING,),
    )
