"""The one Renderer implementation: a model family plugs in how it lays out a conversation as
pieces and how it reads a response back; tokenizing and weighting are the same for all."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tinker

from renderers.messages import trained_message_indices
from renderers.pieces import Piece, encode_pieces, special_token_id, text
from renderers.text_codec import decode_text
from renderers.types import Message, ParsedResponse, ResponseEnding, ToolSpec, TrainOnWhat

# render(messages, tools, add_generation_prompt) -> pieces; it checks the messages itself
RenderPieces = Callable[[Sequence[Message], Sequence[ToolSpec] | None, bool], list[Piece]]
ParseTokens = Callable[[Sequence[int]], ParsedResponse]


@dataclass(frozen=True)
class PieceRenderer:
    name: str
    tokenizer: Any
    render: RenderPieces
    parse: ParseTokens
    stop_sequences: tuple[int, ...] | tuple[str, ...]

    def build_generation_prompt(
        self, messages: Sequence[Message], prefill: str | None = None, *, tools: Sequence[ToolSpec] | None = None
    ) -> tinker.ModelInput:
        pieces = self.render(messages, tools, True)
        if prefill:
            pieces.append(text(prefill))
        return tinker.ModelInput.from_ints(encode_pieces(self.tokenizer, pieces).tokens)

    def build_supervised_example(
        self,
        messages: Sequence[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        *,
        tools: Sequence[ToolSpec] | None = None,
    ) -> tuple[tinker.ModelInput, list[float]]:
        pieces = self.render(messages, tools, False)
        trained = trained_message_indices(messages, train_on_what)
        if TrainOnWhat(train_on_what) == TrainOnWhat.ALL_TOKENS:
            piece_weights = [1.0] * len(pieces)
        else:
            piece_weights = [float(p.is_body and p.message_index in trained) for p in pieces]
        encoded = encode_pieces(self.tokenizer, pieces)
        return tinker.ModelInput.from_ints(encoded.tokens), encoded.weights(piece_weights)

    def get_stop_sequences(self) -> list[int] | list[str]:
        return list(self.stop_sequences)

    def parse_response(self, tokens: Sequence[int]) -> ParsedResponse:
        return self.parse(tokens)


def split_at_end(
    tokens: Sequence[int], stop_ids: Sequence[int], eos_ids: Sequence[int]
) -> tuple[list[int], ResponseEnding]:
    """The tokens before the first end-of-turn (stop) or end-of-text (eos) token, and which it was.

    A response reaching neither was cut off, and is reported malformed rather than accepted.
    """
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return list(tokens[:position]), "stop"
        if token in eos_ids:
            return list(tokens[:position]), "eos"
    return list(tokens), "malformed"


def parse_plain_response(tokenizer, stop_ids: Sequence[int], eos_ids: Sequence[int], tokens: Sequence[int]) -> ParsedResponse:
    """A response that is plain text up to the end-of-turn (stop) or end-of-text (eos) token."""
    body, ending = split_at_end(tokens, stop_ids, eos_ids)
    message: Message = {"role": "assistant", "content": decode_text(tokenizer, body)}
    problem = None
    if ending == "malformed":
        ends = " or ".join(tokenizer.convert_ids_to_tokens([*stop_ids, *eos_ids]))
        problem = f"the response ended without {ends}"
    return ParsedResponse(message, ending, problem)


def token_ids(tokenizer, tokens: Sequence[str]) -> tuple[int, ...]:
    return tuple(special_token_id(tokenizer, token) for token in tokens)
