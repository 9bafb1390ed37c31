"""Random-weight models of real architectures for benchmarks, built locally (nothing downloaded)."""

import os
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from anvil.tiny_qwen3 import ensure_tiny_qwen3

TOKENIZERS = Path(os.environ.get("ANVIL_TOKENIZERS_DIR", Path(__file__).parents[2] / "shared/assets/tokenizers"))


def build_qwen3_103m(folder: Path, cache: Path) -> Path:
    """A 103M-parameter Qwen3 with the real 151,936-row vocabulary (77M of it in lm_head): hidden
    512, 8 layers, head_dim 64, untied lm_head. Uses the real Qwen3 tokenizer where the shared
    assets are present, else the tiny model's (the vocabulary is as large either way)."""
    if (folder / "config.json").exists():
        return folder
    config = Qwen3Config(
        vocab_size=151_936, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, head_dim=64, tie_word_embeddings=False,
        max_position_embeddings=4096, eos_token_id=151_645,
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(folder)
    qwen3 = TOKENIZERS / "qwen3"
    if qwen3.is_dir():
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json"):
            shutil.copyfile(qwen3 / name, folder / name)
    else:
        AutoTokenizer.from_pretrained(ensure_tiny_qwen3(cache)).save_pretrained(folder)
    return folder
