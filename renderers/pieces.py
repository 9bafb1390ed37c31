"""Rendered text to tokens, the way Hugging Face tokenizes a chat template's output, but safe.

A renderer describes a conversation as a list of pieces: special tokens (inserted by id) and
text (encoded with special-token parsing switched off, so that message content can never forge a
turn boundary). Hugging Face tokenizes the template's text by first splitting it at special
tokens and then encoding each stretch in between on its own. Consecutive text pieces are therefore
joined and encoded in one call, so that byte-pair merges across a piece boundary happen exactly
as they do for the template's text, and as text at its place in the document (after a special
token or not, see text_codec); each token is then traced back to the pieces its characters came
from through the tokenizer's offset mapping, which is how weights reach the tokens.
"""

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from renderers.text_codec import encode_text


@dataclass(frozen=True)
class Piece:
    text: str  # the text, or for a special token its string form (e.g. "<|im_end|>")
    is_special: bool = False
    # index of the message this piece renders; None for framing that belongs to no message
    message_index: int | None = None
    # True for the part of a message that is trained when the message is: its content and the
    # end-of-turn marker, not the role header (that is prompt the sampler writes, too)
    is_body: bool = False


def special(token: str, message_index: int | None = None, is_body: bool = False) -> Piece:
    return Piece(token, is_special=True, message_index=message_index, is_body=is_body)


def text(value: str, message_index: int | None = None, is_body: bool = False) -> Piece:
    return Piece(value, is_special=False, message_index=message_index, is_body=is_body)


@dataclass(frozen=True)
class EncodedPieces:
    tokens: list[int]
    # for each token, the first and last index of the pieces its characters come from
    # (they differ only where a byte-pair merge spans a piece boundary)
    token_pieces: list[tuple[int, int]]

    def weights(self, piece_weights: Sequence[float]) -> list[float]:
        # a token spanning two pieces is trained if either is: its text is in the trained output
        return [max(piece_weights[first : last + 1]) for first, last in self.token_pieces]


def special_token_id(tokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or (token_id == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ValueError(f"the tokenizer {tokenizer.name_or_path!r} has no token {token!r}")
    return token_id


def encode_pieces(tokenizer, pieces: Sequence[Piece]) -> EncodedPieces:
    if not tokenizer.is_fast:
        raise TypeError("renderers need a fast (Rust-backed) tokenizer for its offset mapping")
    strip_flags = {token_id: (added.lstrip, added.rstrip) for token_id, added in tokenizer.added_tokens_decoder.items()}
    tokens: list[int] = []
    token_pieces: list[tuple[int, int]] = []
    run: list[int] = []  # indices of the text pieces since the last special token
    strip_start = False  # the previous special token swallows whitespace after it
    follows_special = False  # a special token came before the run: it does not start the document

    for index, piece in enumerate(pieces):
        if not piece.is_special:
            run.append(index)
            continue
        token_id = special_token_id(tokenizer, piece.text)
        lstrip, rstrip = strip_flags.get(token_id, (False, False))
        _encode_run(tokenizer, pieces, run, strip_start, lstrip, follows_special, tokens, token_pieces)
        tokens.append(token_id)
        token_pieces.append((index, index))
        run, strip_start, follows_special = [], rstrip, True
    _encode_run(tokenizer, pieces, run, strip_start, False, follows_special, tokens, token_pieces)
    return EncodedPieces(tokens, token_pieces)


def _encode_run(tokenizer, pieces, run, strip_start, strip_end, follows_special, tokens, token_pieces) -> None:
    run = [i for i in run if pieces[i].text]  # empty pieces own no character
    if not run:
        return
    joined = "".join(pieces[i].text for i in run)
    starts = []  # character offset of each piece of the run in `joined`
    offset = 0
    for i in run:
        starts.append(offset)
        offset += len(pieces[i].text)

    # Added tokens flagged lstrip/rstrip (Phi-3's <|end|>, <|user|>, ...) make the tokenizer drop
    # the whitespace next to them before encoding the text in between; do the same.
    begin, end = 0, len(joined)
    if strip_start:
        while begin < end and _is_whitespace(joined[begin]):
            begin += 1
    if strip_end:
        while end > begin and _is_whitespace(joined[end - 1]):
            end -= 1
    if begin == end:
        return

    for token_id, (char_start, char_end) in encode_text(tokenizer, joined[begin:end], follows_special):
        char_start += begin
        char_end = max(char_end + begin, char_start + 1)
        first = run[bisect.bisect_right(starts, char_start) - 1]
        last = run[bisect.bisect_right(starts, char_end - 1) - 1]
        tokens.append(token_id)
        token_pieces.append((first, last))


def _is_whitespace(char: str) -> bool:
    # The tokenizers library strips with Rust's char::is_whitespace (Unicode White_Space), which
    # unlike str.isspace does not count the ASCII separators U+001C..U+001F.
    return char.isspace() and char not in "\x1c\x1d\x1e\x1f"
