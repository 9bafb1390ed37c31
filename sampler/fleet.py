"""The sampling fleet: one engine per base model, created on first use."""

import threading
from pathlib import Path

from anvil.base_models import BaseModelRegistry
from anvil.types import SampleResult, SampleWork
from sampler.engine import SamplingEngine
from sampler.torch_engine import TorchSamplingEngine


class SamplerFleet:
    def __init__(self, registry: BaseModelRegistry):
        self.registry = registry
        self._engines: dict[str, SamplingEngine] = {}
        self._lock = threading.Lock()

    def engine(self, base_model: str) -> SamplingEngine:
        with self._lock:
            if base_model not in self._engines:
                self._engines[base_model] = TorchSamplingEngine(base_model, self.registry.resolve(base_model))
            return self._engines[base_model]

    def sample(self, base_model: str, adapter: Path | None, work: SampleWork) -> SampleResult:
        return self.engine(base_model).sample(work, adapter)
