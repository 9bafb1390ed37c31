"""Tiny Qwen3 model folders with the real Qwen3 tokenizer, as transformers 4.x and 5.x save them.

The 4.x folder keeps the official files byte for byte (config.json and tokenizer_config.json as
transformers 4.51 wrote them, vocab.json + merges.txt, no tokenizer.json) around small random
weights; the 5.x folder is the same model and tokenizer saved again by the installed
transformers 5 (whose tokenizer_config.json lists `extra_special_tokens`, which 4.x cannot read).
"""

import json
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

TOKENIZERS = Path(os.environ.get("ANVIL_TOKENIZERS_DIR", Path(__file__).parents[2] / "shared/assets/tokenizers"))
QWEN3 = TOKENIZERS / "qwen3"
# small enough to start fast, head_dim 64 for vLLM's CPU attention; the real vocabulary
SHRINK = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 1,
    "num_key_value_heads": 1, "head_dim": 64, "max_position_embeddings": 2048, "torch_dtype": "float32",
}
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json")


def build_4x_folder(out: Path) -> Path:
    config = {**json.loads((QWEN3 / "config.json").read_text()), **SHRINK}
    assert config["transformers_version"].startswith("4."), "the shared Qwen3 files were saved by 4.x"
    out.mkdir(parents=True, exist_ok=True)
    _random_model(config).save_pretrained(out)
    # what 5.x's save_pretrained wrote is replaced by the 4.x config, shrunk but in 4.x's own words
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in TOKENIZER_FILES:
        shutil.copyfile(QWEN3 / name, out / name)
    return out


def build_5x_folder(source_4x: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    Qwen3ForCausalLM.from_pretrained(source_4x, dtype=torch.float32).save_pretrained(out)
    AutoTokenizer.from_pretrained(source_4x).save_pretrained(out)
    shutil.copyfile(source_4x / "generation_config.json", out / "generation_config.json")
    return out


def _random_model(config: dict) -> Qwen3ForCausalLM:
    torch.manual_seed(0)
    fields = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version", "torch_dtype")}
    return Qwen3ForCausalLM(Qwen3Config(**fields)).to(torch.float32)
