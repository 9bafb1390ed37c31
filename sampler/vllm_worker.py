"""What the vLLM engine (sampler/vllm_engine.py) runs inside vLLM's worker process.

vLLM mixes `AnvilWorkerExtension` into its worker class (the `worker_extension_cls` engine
argument) and the engine calls its methods through `collective_rpc`, so they run next to the
model: they make sampled-token logprobs those of the temperature-scaled distribution before
top-k/top-p truncation, say which modules take a LoRA, and merge one adapter into the base weights
in place for hot-swap serving.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from anvil.peft_format import read_peft_adapter


class AnvilWorkerExtension:
    """Methods vLLM adds to its worker; `self` is the worker (`model_runner`, `vllm_config`).
    Every name starts with `anvil_` so none shadows one of the worker's own."""

    def anvil_report_pretruncation_logprobs(self) -> None:
        report_pretruncation_logprobs(self.model_runner.sampler)

    def anvil_lora_module_paths(self) -> list[str]:
        return lora_module_paths(self.model_runner.get_model())

    def anvil_merge_adapter(self, folder: str | None) -> None:
        """Serve the adapter in `folder` merged into the weights, or the pristine base (None)."""
        merger = getattr(self, "anvil_merger", None)
        if merger is None:
            merger = AdapterMerger(self.model_runner.get_model(), self.vllm_config.model_config)
            self.anvil_merger = merger
        merger.merge(Path(folder) if folder is not None else None)


def report_pretruncation_logprobs(sampler: nn.Module) -> None:
    """vLLM's `raw_logprobs` are taken before temperature scaling and its `processed_logprobs`
    after top-k/top-p truncation (renormalised over the kept tokens); neither is the
    temperature-scaled distribution over the whole vocabulary. The top-k/top-p stage receives
    exactly the temperature-scaled logits (greedy rows at temperature 1, i.e. unscaled), so the
    log-softmax is taken there, before it truncates, and handed on as the processed logprobs. The
    engine runs with `logprobs_mode="processed_logprobs"` so the sampler returns them; a batch of
    greedy requests only never reaches this stage, and vLLM then returns the log-softmax of the
    unscaled logits, as wanted."""
    stage = sampler.topk_topp_sampler
    if getattr(stage, "anvil_pretruncation", False):
        return
    truncate_and_sample = stage.forward

    def forward(logits, generators, k, p):
        logprobs = logits.log_softmax(dim=-1, dtype=torch.float32)  # before truncation edits logits
        sampled, _ = truncate_and_sample(logits, generators, k, p)
        return sampled, logprobs

    stage.forward = forward
    # the stage's own (truncated) logprobs would be discarded: don't compute them
    stage.logprobs_mode = "raw_logprobs"
    stage.anvil_pretruncation = True


def lora_module_paths(model: nn.Module) -> list[str]:
    """Module paths, as a PEFT adapter names them, of every module vLLM applies a LoRA to:
    vLLM wraps fused modules (qkv_proj, gate_up_proj) whose parts are the adapter's modules, and
    serves an lm_head LoRA by wrapping the logits processor beside it."""
    from vllm.lora.layers import BaseLayerWithLoRA, LogitsProcessorWithLoRA

    packed = getattr(model, "packed_modules_mapping", {})
    paths = []
    for name, module in model.named_modules():
        if not isinstance(module, BaseLayerWithLoRA):
            continue
        parent, _, leaf = name.rpartition(".")
        if isinstance(module, LogitsProcessorWithLoRA):
            leaf = "lm_head"
        for part in packed.get(leaf, [leaf]):
            paths.append(f"{parent}.{part}" if parent else part)
    return sorted(paths)


class CheckpointTensors:
    """The base model's tensors as its safetensors files hold them, read on demand and kept once
    read: the pristine weights a merged adapter is computed from and restored to."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file_of: dict[str, Path] = {}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    self.file_of[name] = file
        if not self.file_of:
            raise FileNotFoundError(f"{folder}: no *.safetensors files to merge adapters against")
        self.names_of_module: dict[str, list[str]] = {}
        for name in self.file_of:
            self.names_of_module.setdefault(name.rpartition(".")[0], []).append(name)
        self._kept: dict[str, torch.Tensor] = {}

    def tensor(self, name: str) -> torch.Tensor:
        if name not in self._kept:
            with safe_open(str(self.file_of[name]), framework="pt") as handle:
                self._kept[name] = handle.get_tensor(name)
        return self._kept[name]


class AdapterMerger:
    """Serves one adapter merged into the weights: W + (alpha/r)·B·A, computed in float32 from the
    pristine checkpoint weights and loaded through vLLM's in-place reload and the model's own
    `load_weights`, so vLLM fuses q/k/v and gate/up and repacks its CPU kernels itself."""

    def __init__(self, model: nn.Module, model_config):
        self.model = model
        self.model_config = model_config
        self.checkpoint = CheckpointTensors(Path(model_config.model))
        self.packed: dict[str, list[str]] = getattr(model, "packed_modules_mapping", {})
        # module paths whose weights may differ from the checkpoint's right now
        self.changed: set[str] = set()

    def merge(self, folder: Path | None) -> None:
        factors = self._factors(folder) if folder is not None else {}
        touched = self.changed | set(factors)
        weights = {}
        for name in self._tensor_names_of_layers(touched):
            module = name.rpartition(".")[0]
            pristine = self.checkpoint.tensor(name)
            if module in factors and name == f"{module}.weight":
                lora_b, lora_a, scale = factors[module]
                # one fused pass over the (possibly vocabulary-wide) weight: no delta tensor
                weights[name] = torch.addmm(pristine.float(), lora_b, lora_a, alpha=scale)
            else:
                weights[name] = pristine
        # until the load completes, any touched module may hold either version
        self.changed = touched
        self._load(weights)
        self.changed = set(factors)

    def _factors(self, folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
        """(B, A, alpha/r) per module path, every shape checked against the base before any
        weight changes."""
        config, lora = read_peft_adapter(folder)
        scale = float(config["lora_alpha"]) / float(config["r"])
        factors = {}
        for path, (lora_a, lora_b) in lora.items():
            name = f"{path}.weight"
            if name not in self.checkpoint.file_of:
                raise ValueError(f"adapter {folder} targets {path}, which the base model's checkpoint lacks")
            merged_shape = (lora_b.shape[0], lora_a.shape[1])
            shape = tuple(self.checkpoint.tensor(name).shape)
            if merged_shape != shape or lora_b.shape[1] != lora_a.shape[0]:
                raise ValueError(f"adapter {folder}: {path} delta is {merged_shape}, the weight {shape}")
            factors[path] = (lora_b.float(), lora_a.float(), scale)
        return factors

    def _tensor_names_of_layers(self, paths: set[str]) -> list[str]:
        """All checkpoint tensors of the vLLM layers holding `paths`: a fused layer (qkv_proj,
        gate_up_proj) is rebuilt from all its parts, weights and biases, or its other parts would
        be left uninitialised by the reload."""
        modules: set[str] = set()
        for path in paths:
            parent, _, leaf = path.rpartition(".")
            parts = next((group for group in self.packed.values() if leaf in group), [leaf])
            modules.update(f"{parent}.{part}" if parent else part for part in parts)
        return sorted(name for module in modules for name in self.checkpoint.names_of_module.get(module, []))

    def _load(self, weights: dict[str, torch.Tensor]) -> None:
        from vllm.model_executor.model_loader.reload import (
            finalize_layerwise_reload,
            initialize_layerwise_reload,
        )

        with torch.no_grad(), _quiet_untouched_layers():
            initialize_layerwise_reload(self.model)
            try:
                self.model.load_weights(iter(weights.items()))
            finally:
                # puts the kernel tensors of every layer not reloaded back in place
                finalize_layerwise_reload(self.model, self.model_config)


@contextmanager
def _quiet_untouched_layers() -> Iterator[None]:
    """The in-place reload warns for each layer given no weights; here that is every layer the
    adapter does not touch, by design."""
    reload_log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    level = reload_log.level
    reload_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        reload_log.setLevel(level)
