"""The contract every sampling engine implements: the torch reference engine and the vLLM engine.

An engine serves one base model, optionally through a LoRA adapter per request, and takes many
requests in flight at once: `sample` is a coroutine, and an engine batches concurrent calls where
it can (vLLM's continuous batching) or serialises them behind the same contract (the torch
engine). `stream` runs the same work and hands over the tokens as the engine produces them.
All of an engine's coroutines run on one event loop, the sampling scheduler's.
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from anvil.errors import UserError
from anvil.types import AdapterRef, SampleDelta, SampleResult, SampleWork


class EngineDead(RuntimeError):
    """The engine stopped working (its process died); the fleet restarts it and retries the work."""


class SampleRejected(UserError):
    """The engine refused the work as asked (the request's fault, e.g. a prompt longer than the
    context the engine can hold): a user error, not retried."""


@dataclass
class EngineStats:
    kind: str  # "torch" | "vllm"
    base_model: str
    in_flight: int  # requests accepted and not yet answered
    requests_done: int
    tokens_generated: int
    adapters_resident: int  # adapters the engine holds loaded right now


@dataclass
class RequestCounts:
    """The request figures every engine reports; `counting` wraps one request."""

    in_flight: int = 0
    requests_done: int = 0
    tokens_generated: int = 0

    @contextmanager
    def counting(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def done(self, result: SampleResult) -> SampleResult:
        self.finished(sum(len(seq.tokens) for seq in result.sequences))
        return result

    def finished(self, tokens: int) -> None:
        self.requests_done += 1
        self.tokens_generated += tokens

    def stats(self, kind: str, base_model: str, adapters_resident: int) -> EngineStats:
        return EngineStats(
            kind=kind,
            base_model=base_model,
            in_flight=self.in_flight,
            requests_done=self.requests_done,
            tokens_generated=self.tokens_generated,
            adapters_resident=adapters_resident,
        )


class SamplingEngine(Protocol):
    kind: str
    base_model: str

    def cannot_serve(self, adapter: AdapterRef | None) -> str | None:
        """Why this engine cannot serve `adapter` exactly (None: it can). An engine never serves
        an adapter without part of it; the fleet sends such work to an engine that can."""
        ...

    async def sample(self, work: SampleWork, adapter: AdapterRef | None) -> SampleResult:
        """Sample `work` from the base model, or through `adapter` (loaded on first use, reloaded
        after eviction). Sampled-token logprobs are those of the temperature-scaled distribution
        (before top-k/top-p truncation; at temperature 0, the unscaled one); the stop token or the
        token completing a stop string stays in the returned tokens. Raises EngineDead when the
        engine itself failed, SampleRejected when the request asks what the engine cannot do,
        any other exception when the work failed."""
        ...

    def stream(self, work: SampleWork, adapter: AdapterRef | None) -> AsyncIterator[SampleDelta]:
        """`sample`, token by token: for the same work and seed the deltas of each sequence add up
        to what `sample` returns (prompt logprobs are not streamed). Leaving the iteration early
        ends the request on the engine. Raises as `sample` does; EngineDead only before the first
        delta of a request can be retried safely."""
        ...

    def stats(self) -> EngineStats: ...

    async def aclose(self) -> None: ...
