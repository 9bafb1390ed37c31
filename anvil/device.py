"""Where models run and in which precision: the one place that chooses device and dtype.

The trainer and the torch sampling engine both call `pick_device`, so they run the same base
precision and their logprobs stay comparable; nothing else in the project names a device.
"""

import torch


def pick_device() -> tuple[torch.device, torch.dtype]:
    """The device models run on and the dtype of their frozen base weights."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def has_cuda() -> bool:
    return torch.cuda.is_available()


def vllm_dtype() -> str:
    """The dtype a vLLM sampling engine serves in: the trainer's base precision (`pick_device`),
    so sampled-token logprobs stay comparable with the trainer's."""
    return str(pick_device()[1]).removeprefix("torch.")


# KV cache of a vLLM engine on a CPU. vLLM-CPU otherwise reserves a fraction of the machine's RAM
# (`gpu_memory_utilization`), which the trainer sharing the machine needs more; 1 GiB holds about
# 32k tokens of a 100M-parameter model.
CPU_KV_CACHE_BYTES = 1 << 30


def vllm_kv_cache_bytes() -> int | None:
    """A fixed KV-cache size for a vLLM engine, or None where vLLM should size it from
    `gpu_memory_utilization` (on a GPU)."""
    return None if has_cuda() else CPU_KV_CACHE_BYTES


def vllm_enforce_eager() -> bool:
    """Whether a vLLM engine skips graph compilation: on a CPU, torch.compile adds start time and
    LoRA mode disables it anyway; on a GPU, CUDA graphs pay for their capture."""
    return not has_cuda()
