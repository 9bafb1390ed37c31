"""Sampled tokens to the text an OpenAI client gets, whole or as it is sampled.

The text of a sequence is its tokens decoded up to the first end token (a renderer's end-of-turn
token, the model's end-of-sequence token), cut before the first stop string: OpenAI returns
neither. The sampled tokens themselves, stop tokens included, are what usage and logprobs count.

`TextStream` hands the text out piece by piece while tokens arrive, holding back what may still
change: a character whose bytes are not all sampled yet, and a tail that may be the start of a
stop string. A whole response is one `push` of all its tokens and a `finish`, so a streamed
response concatenates to exactly the text of the same tokens answered at once.
"""

import logging
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Protocol

log = logging.getLogger(__name__)

# how many tokens before the ones being decoded are decoded with them, so that tokenizers whose
# decoding depends on what precedes (SentencePiece's word-start marker) decode as in the whole text
DECODE_CONTEXT_TOKENS = 6


class TextStream:
    def __init__(self, tokenizer, end_tokens: Iterable[int], stop_strings: Sequence[str]):
        self._tokenizer = tokenizer
        self._end_tokens = frozenset(end_tokens)
        self._stop_strings = tuple(stop_strings)
        self.tokens: list[int] = []  # the text's tokens: those before the first end token
        self.ended = False  # an end token or a stop string was reached
        self._decoded = ""  # text of tokens[:_decoded_upto], complete characters only
        self._decoded_upto = 0
        self.emitted = ""  # the text handed out so far

    def push(self, tokens: Sequence[int]) -> str:
        """Take newly sampled tokens; return the text that became certain."""
        for token in tokens:
            if self.ended:
                break
            if token in self._end_tokens:
                self.ended = True
                break
            self.tokens.append(token)
        self._decode_new()
        return self._hand_out(self._visible(self._decoded, final=False))

    def finish(self) -> str:
        """The rest of the text, once the sequence is complete."""
        whole = decode(self._tokenizer, self.tokens)
        return self._hand_out(self._visible(whole, final=True))

    def _decode_new(self) -> None:
        if self._decoded_upto == len(self.tokens):
            return
        start = max(0, self._decoded_upto - DECODE_CONTEXT_TOKENS)
        before = decode(self._tokenizer, self.tokens[start : self._decoded_upto])
        after = decode(self._tokenizer, self.tokens[start:])
        # a trailing replacement character is a multi-byte character still being sampled
        if after.endswith("\ufffd") or not after.startswith(before):
            return
        self._decoded += after[len(before) :]
        self._decoded_upto = len(self.tokens)

    def _visible(self, text: str, final: bool) -> str:
        cut = min((at for at in (text.find(stop) for stop in self._stop_strings) if at >= 0), default=-1)
        if cut >= 0:
            self.ended = True
            return text[:cut]
        if final:
            return text
        # a tail that may become a stop string is held back until it does or cannot
        held = max((_partial_suffix(text, stop) for stop in self._stop_strings), default=0)
        return text[: len(text) - held]

    def _hand_out(self, visible: str) -> str:
        if not visible.startswith(self.emitted):
            # cannot happen for the tokenizers anvil serves; taking text back is impossible
            log.warning("decoded text changed after it was streamed; keeping what was sent")
            return ""
        piece = visible[len(self.emitted) :]
        self.emitted = visible
        return piece


def _partial_suffix(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `stop`."""
    for length in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0


def decode(tokenizer, tokens: Sequence[int]) -> str:
    # exactly as sampled: special-token strings kept, no clean-up of spaces (renderers' decoding)
    return tokenizer.decode(list(tokens), skip_special_tokens=False, clean_up_tokenization_spaces=False)


class TokenNames(Protocol):
    def of(self, token_id: int) -> tuple[str, list[int]]:
        """(the token as logprobs name it, its bytes)"""
        ...


class TokenTexts:
    """Each token's own text and bytes, for logprobs: a token of a byte-level tokenizer may hold
    part of a character, so its bytes are read from the vocabulary, not from decoding it alone."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        decoder = tokenizer.backend_tokenizer.decoder
        self._byte_level = type(decoder).__name__ == "ByteLevel"
        self._added = {token_id: added.content for token_id, added in tokenizer.added_tokens_decoder.items()}
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def of(self, token_id: int) -> tuple[str, list[int]]:
        cached = self._cache.get(token_id)
        if cached is None:
            raw = self._bytes(token_id)
            cached = (raw.decode("utf-8", errors="replace"), list(raw))
            self._cache[token_id] = cached
        return cached

    def _bytes(self, token_id: int) -> bytes:
        if token_id in self._added:
            return self._added[token_id].encode()
        if self._byte_level:
            piece = self._tokenizer.convert_ids_to_tokens(token_id)
            byte_of = _byte_level_decoder()
            if piece is not None and all(char in byte_of for char in piece):
                return bytes(byte_of[char] for char in piece)
        return decode(self._tokenizer, [token_id]).encode()


class TokenIdTexts:
    """Tokens named by their ids ("token_id:42"), as vLLM's `return_tokens_as_token_ids` names them:
    what a client needs to score or train on exactly the sampled tokens."""

    def __init__(self, texts: TokenTexts):
        self._texts = texts

    def of(self, token_id: int) -> tuple[str, list[int]]:
        return f"token_id:{token_id}", self._texts.of(token_id)[1]


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-character table, which byte-level BPE vocabularies use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(char): byte for byte, char in zip(printable, chars, strict=True)}
