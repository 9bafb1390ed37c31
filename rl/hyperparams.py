"""A starting learning rate for LoRA training, from the learning-rate scaling Tinker publishes.

    lr = 5e-5 * 10 * (2000 / hidden_size) ** exponent

- 5e-5: the base (full fine-tuning) learning rate of the rule;
- 10: how much larger LoRA's learning rate is than full fine-tuning's ("LoRA Without Regret",
  https://thinkingmachines.ai/blog/lora/);
- hidden_size: the model's hidden size (the width of its residual stream);
- exponent: per model family, 0.781 for Llama and 0.0775 for Qwen; no other family is calibrated.

Source: the tinker-cookbook's `tinker_cookbook.hyperparam_utils.get_lr` (0.6.1, LoRA case),
documented at https://tinker-docs.thinkingmachines.ai/cookbook/api-reference/hyperparam_utils/get_lr;
how to tune from it: https://tinker-docs.thinkingmachines.ai/tinker/learning-rate-guidance/. The rule
was fitted on AdamW LoRA supervised fine-tuning, so it is a starting point, for RL too: sweep a
few values around it. anvil uses Tinker's LoRA scaling (alpha 32, scale alpha/rank), which the
rule assumes; it has no rank term.

Nothing here downloads: the hidden size comes from the caller, from the config.json of a local
model folder, or from the table below.
"""

import json
from pathlib import Path

BASE_LR = 5e-5
LORA_OVER_FULL_FINETUNE_LR = 10.0
REFERENCE_HIDDEN_SIZE = 2000
EXPONENT_BY_FAMILY = {"llama": 0.781, "qwen": 0.0775}

# Hidden sizes from the models' published config.json files. Variants (-Base, -Instruct,
# -Instruct-2507, -Thinking-2507) share their model's size; lookups ignore case.
KNOWN_HIDDEN_SIZES = {
    "Qwen/Qwen3-0.6B": 1024,
    "Qwen/Qwen3-1.7B": 2048,
    "Qwen/Qwen3-4B": 2560,
    "Qwen/Qwen3-8B": 4096,
    "Qwen/Qwen3-14B": 5120,
    "Qwen/Qwen3-32B": 5120,
    "Qwen/Qwen3-30B-A3B": 2048,
    "Qwen/Qwen3-235B-A22B": 4096,
    "meta-llama/Llama-3.2-1B": 2048,
    "meta-llama/Llama-3.2-3B": 3072,
    "meta-llama/Llama-3.1-8B": 4096,
    "meta-llama/Llama-3.1-70B": 8192,
    "meta-llama/Llama-3.3-70B": 8192,
    # anvil's built-in model (anvil/tiny_qwen3.py builds it)
    "anvil/tiny-qwen3": 128,
}
_VARIANT_SUFFIXES = ("-instruct-2507", "-thinking-2507", "-instruct", "-base")
_KNOWN_BY_LOWER_NAME = {name.lower(): size for name, size in KNOWN_HIDDEN_SIZES.items()}


def get_lr(model: str, hidden_size: int | None = None) -> float:
    """A LoRA learning rate to start from for `model`: a model name (Tinker's `:suffix`, if any,
    is ignored) or a local model folder with a config.json, such as one `anvil serve --model`
    serves. `hidden_size`, when given, overrides what the folder or the table say."""
    config = _folder_config(model)
    family = _family(model, config)
    if hidden_size is None:
        hidden_size = _hidden_size(model, config)
    if hidden_size <= 0:
        raise ValueError(f"hidden_size must be positive, got {hidden_size}")
    exponent = EXPONENT_BY_FAMILY[family]
    return BASE_LR * LORA_OVER_FULL_FINETUNE_LR * (REFERENCE_HIDDEN_SIZE / hidden_size) ** exponent


def _folder_config(model: str) -> dict | None:
    """The config.json of `model` if it names a local folder that has one."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        if folder.is_absolute() or model.startswith((".", "~")):
            raise ValueError(f"model folder {model} does not exist")
        return None
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None  # e.g. a tokenizer-only folder named like a model id: go by the name
    return json.loads(config_path.read_text())


def _family(model: str, config: dict | None) -> str:
    if config is not None:
        # Llama's model_type is "llama"; Qwen's are "qwen2", "qwen3", "qwen3_moe", ...
        model_type = str(config.get("model_type", "")).lower()
        candidates = [model_type] + [str(a).lower() for a in config.get("architectures") or []]
    else:
        candidates = [_base_name(model).lower()]
    for family in EXPONENT_BY_FAMILY:
        if any(family in candidate for candidate in candidates):
            return family
    raise ValueError(
        f"no learning-rate rule for {model!r}: the published scaling is calibrated for the "
        f"{' and '.join(EXPONENT_BY_FAMILY)} families only; choose a learning rate by a short sweep"
    )


def _hidden_size(model: str, config: dict | None) -> int:
    if config is not None:
        # multimodal configs nest the language model's size under text_config
        size = config.get("hidden_size") or (config.get("text_config") or {}).get("hidden_size")
        if size is None:
            raise ValueError(f"{model}/config.json has no hidden_size; pass hidden_size=")
        return int(size)
    name = _base_name(model).lower()
    for candidate in [name] + [name[: -len(s)] for s in _VARIANT_SUFFIXES if name.endswith(s)]:
        if candidate in _KNOWN_BY_LOWER_NAME:
            return _KNOWN_BY_LOWER_NAME[candidate]
    raise ValueError(
        f"unknown hidden size for {model!r}: pass hidden_size= (the model's config.json has it), "
        f"or pass the path of a local model folder"
    )


def _base_name(model: str) -> str:
    """A model id without Tinker's variant suffix (`name:peft:262144` → `name`)."""
    return model.split(":", 1)[0]
