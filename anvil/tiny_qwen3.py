"""The built-in model `anvil/tiny-qwen3`: Qwen3 architecture, random weights from a fixed seed,
and a byte-level BPE tokenizer trained on text the project ships.

It needs no download, and every machine builds the same files, so tests and demos can run end to
end anywhere. head_dim is 64 because vLLM's CPU attention needs at least that.
"""

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

TINY_QWEN3_NAME = "anvil/tiny-qwen3"
# bump when the recipe below changes, so a stale cache is rebuilt rather than reused
TINY_QWEN3_VERSION = 2
WEIGHTS_SEED = 1234
BPE_VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# single tokens that are not special, as in the real Qwen3 tokenizer: renderers that encode
# message content with special tokens disabled must still see one token each
THINK_TOKENS = ["<think>", "</think>"]

# Qwen-style ChatML, without tools: <|im_start|>role\ncontent<|im_end|>\n per message.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def ensure_tiny_qwen3(cache_dir: Path) -> Path:
    """Return the folder of the built model, building it into `cache_dir` on first use."""
    target = cache_dir / f"tiny-qwen3-v{TINY_QWEN3_VERSION}"
    if (target / "config.json").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-qwen3-", dir=cache_dir))
    try:
        build_tiny_qwen3(staging)
        try:
            os.rename(staging, target)
        except OSError:
            # another process finished first; its files are identical
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tiny_qwen3(out_dir: Path) -> None:
    tokenizer = _train_tokenizer()
    tokenizer.save_pretrained(out_dir)
    vocab_size = _round_up(len(tokenizer), 64)
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        torch_dtype="float32",
    )
    torch.manual_seed(WEIGHTS_SEED)
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=True
    ).save_pretrained(out_dir)
    (out_dir / "anvil_model.json").write_text(
        json.dumps({"name": TINY_QWEN3_NAME, "version": TINY_QWEN3_VERSION, "seed": WEIGHTS_SEED})
    )


def _train_tokenizer() -> PreTrainedTokenizerFast:
    corpus = resources.files("anvil").joinpath("assets/tiny_corpus.txt").read_text(encoding="utf-8")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS + THINK_TOKENS,  # fixed ids 0-4
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus.splitlines(keepends=True), trainer)
    bpe.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple
