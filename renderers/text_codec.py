"""Text to tokens and back exactly as Hugging Face does it at that place in a document.

Hugging Face splits a document at added tokens and encodes each stretch of text in between on its
own, and one thing can depend on where a stretch sits. transformers 5 builds its LlamaTokenizer
(Phi-3, Llama 2, Mistral, ...) with a Metaspace pre-tokenizer whose prepend_scheme is "first":
the "▁" word-start marker goes before the document's first stretch only, never before text that
follows a special token. (transformers 4.57 used Phi-3.5's tokenizer.json as written, whose
normalizer prepends it to every stretch: the tests' multi-turn Phi-3.5 chat is 53 tokens there
and 55 on 5.x.) A stretch encoded on its own is always the first, so a stretch that follows a
special token is encoded by a copy of the tokenizer that never prepends, which is what "first"
does at that place. Tokenizers whose pre-tokenizer does not depend on the place (Qwen's, Llama 3's
byte-level BPE, or a file's Prepend normalizer) need no copy.
"""

import json
import weakref
from collections.abc import Sequence

from tokenizers import Tokenizer

# tokenizer -> (its vocabulary size when copied, the never-prepending copy, or None if not needed)
_AFTER_SPECIAL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encode_text(tokenizer, value: str, follows_special: bool) -> list[tuple[int, tuple[int, int]]]:
    """(token id, character span in `value`) of each token; special-token strings stay plain text."""
    copy = _after_special_backend(tokenizer) if follows_special else None
    if copy is not None:
        encoding = copy.encode(value, add_special_tokens=False)
        return list(zip(encoding.ids, encoding.offsets, strict=True))
    # split_special_tokens=True is set on the shared Rust tokenizer and left there by transformers;
    # put it back, or whoever encodes with tokenizer.backend_tokenizer next (a sampler, say) would
    # have "<|im_end|>" split into plain text too
    backend = tokenizer.backend_tokenizer
    before = backend.encode_special_tokens
    try:
        encoding = tokenizer(value, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    finally:
        backend.encode_special_tokens = before
    return list(zip(encoding["input_ids"], encoding["offset_mapping"], strict=True))


def decode_text(tokenizer, tokens: Sequence[int], skip_special_tokens: bool = False) -> str:
    """The text of tokens exactly as the model wrote it (with special-token strings unless skipped).

    The tokenizer's `clean_up_tokenization_spaces` (true in Llama 3's config) would turn " ." into
    "." and so change the text; transformers 4 applied it, 5.x skips it for BPE tokenizers only,
    with a warning. A parsed reply must re-render to the same tokens, so it is always off here.
    """
    return tokenizer.decode(list(tokens), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)


def _after_special_backend(tokenizer) -> Tokenizer | None:
    backend = tokenizer.backend_tokenizer
    size = backend.get_vocab_size(with_added_tokens=True)
    cached = _AFTER_SPECIAL.get(tokenizer)
    if cached is None or cached[0] != size:  # tokens added since the copy was made: copy again
        cached = (size, _never_prepending_copy(backend))
        _AFTER_SPECIAL[tokenizer] = cached
    return cached[1]


def _never_prepending_copy(backend: Tokenizer) -> Tokenizer | None:
    config = json.loads(backend.to_str())
    first_only = [
        node
        for node in _nodes(config.get("pre_tokenizer"))
        if node.get("type") == "Metaspace" and node.get("prepend_scheme") == "first"
    ]
    if not first_only:
        return None
    for node in first_only:
        node["prepend_scheme"] = "never"
    copy = Tokenizer.from_str(json.dumps(config))
    # the copy would keep whatever truncation or padding transformers last set on the original
    copy.no_truncation()
    copy.no_padding()
    copy.encode_special_tokens = True  # as split_special_tokens=True: content never forges a special token
    return copy


def _nodes(config):
    """Every JSON object in a tokenizer component's config (a Sequence nests its parts)."""
    if isinstance(config, dict):
        yield config
        for value in config.values():
            yield from _nodes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _nodes(value)
