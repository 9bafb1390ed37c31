"""LoRA adapters on disk in PEFT's format (adapter_config.json + adapter_model.safetensors), the
format `peft` and vLLM load as is. The trainer writes it; the sampler reads it."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
KEY_PREFIX = "base_model.model."


def write_peft_adapter(
    out_dir: Path,
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]],
    rank: int,
    alpha: float,
    base_model: str,
) -> None:
    """`weights` maps a module path of the base model (e.g. `model.layers.0.self_attn.q_proj`,
    `lm_head`) to its (lora_A [r, in], lora_B [out, r])."""
    tensors = {}
    for path, (lora_a, lora_b) in weights.items():
        tensors[f"{KEY_PREFIX}{path}.lora_A.weight"] = lora_a.detach().float().contiguous().cpu()
        tensors[f"{KEY_PREFIX}{path}.lora_B.weight"] = lora_b.detach().float().contiguous().cpu()
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "target_modules": sorted({path.rsplit(".", 1)[-1] for path in weights}),
    }
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def read_peft_adapter(folder: Path) -> tuple[dict, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The adapter's config and its (lora_A, lora_B) per module path."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    tensors = load_file(str(folder / WEIGHTS_FILE))
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        path = key[len(KEY_PREFIX) : -len(".lora_A.weight")]
        weights[path] = (tensor, tensors[f"{KEY_PREFIX}{path}.lora_B.weight"])
    return config, weights
