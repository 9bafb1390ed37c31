"""The interface every sampling engine implements (the torch reference engine today, vLLM next)."""

from pathlib import Path
from typing import Protocol

from anvil.types import SampleResult, SampleWork


class SamplingEngine(Protocol):
    base_model: str

    def sample(self, work: SampleWork, adapter: Path | None) -> SampleResult:
        """Sample `work` from the base model, or from it with the PEFT adapter in folder `adapter`.

        Logprobs of sampled tokens are those of the temperature-scaled distribution; the stop token
        or the token completing a stop string stays in the returned tokens.
        """
        ...
