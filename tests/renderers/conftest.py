"""Tokenizers for the renderer tests, each loaded once per session.

The real ones live outside the project, in `../shared/assets/tokenizers` beside the project root
(or wherever ANVIL_TOKENIZERS_DIR points); tests needing them skip when they are absent. The
Llama 3 tokenizer is built here: no Llama tokenizer is kept, but its special tokens are public.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TOKENIZERS_DIR = Path(os.environ.get("ANVIL_TOKENIZERS_DIR", PROJECT_ROOT.parent / "shared" / "assets" / "tokenizers"))

# Llama 3's special tokens at their published ids
LLAMA3_SPECIAL_TOKENS = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eot_id|>": 128009,
}


def load_real_tokenizer(folder: str):
    path = TOKENIZERS_DIR / folder
    if not path.is_dir():
        pytest.skip(
            f"real tokenizer {folder!r} not found at {path} (set ANVIL_TOKENIZERS_DIR to the folder holding it)"
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="session")
def qwen3_tokenizer_path() -> Path:
    load_real_tokenizer("qwen3")  # skips when absent
    return TOKENIZERS_DIR / "qwen3"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    return load_real_tokenizer("qwen3")


@pytest.fixture(scope="session")
def qwen2_5_tokenizer():
    return load_real_tokenizer("qwen2.5-instruct")


@pytest.fixture(scope="session")
def phi3_tokenizer():
    return load_real_tokenizer("phi-3.5-mini-instruct")


@pytest.fixture(scope="session")
def phi3_file_tokenizer(phi3_tokenizer):
    """Phi-3.5's tokenizer.json as written, wrapped as is. transformers 5 rebuilds Phi-3.5's
    tokenizer (no "▁" before text that follows a special token); the file's own normaliser puts
    one there, as transformers 4.57 did."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(TOKENIZERS_DIR / "phi-3.5-mini-instruct" / "tokenizer.json"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=phi3_tokenizer.eos_token)
    tokenizer.chat_template = phi3_tokenizer.chat_template
    return tokenizer


@pytest.fixture(scope="session")
def llama3_tokenizer():
    """A small byte-level BPE tokenizer carrying Llama 3's special tokens at Llama 3's ids, and
    like Llama 3's, adding <|begin_of_text|> in front of a plain document."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    def byte_level(tokenizer):
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        return tokenizer

    trained = byte_level(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    corpus = ["Hello there! How are you today? I am fine, thanks. The assistant answers the user's question."]
    trained.train_from_iterator(corpus * 10, trainer)
    vocab = trained.get_vocab()
    # fill the ids up to Llama 3's special range, and that range, as its real vocabulary does
    vocab.update({f"<|unused_{i}|>": i for i in range(len(vocab), 128000)})
    taken = set(LLAMA3_SPECIAL_TOKENS.values())
    specials = {f"<|reserved_special_token_{i - 128000}|>": i for i in range(128000, 128256) if i not in taken}
    specials |= LLAMA3_SPECIAL_TOKENS
    vocab.update(specials)
    merges = _merges_of(trained)

    tokenizer = byte_level(Tokenizer(models.BPE(vocab, merges)))
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        special_tokens=[("<|begin_of_text|>", LLAMA3_SPECIAL_TOKENS["<|begin_of_text|>"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"
    )


def _merges_of(tokenizer) -> list[tuple[str, str]]:
    import json

    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
