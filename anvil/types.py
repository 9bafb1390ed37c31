"""Internal work items and results, shared by the gateway, trainer and sampler.

The gateway converts wire types (JSON bodies, protobuf) into these at one boundary; the trainer and
the sampler never see the wire.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 32
    seed: int | None = None
    train_attn: bool = True
    train_mlp: bool = True
    train_unembed: bool = True


@dataclass(frozen=True)
class AdamStep:
    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0


@dataclass
class TrainDatum:
    tokens: np.ndarray  # int64 [N]: the model input
    # every loss_fn_input as sent, decoded: target_tokens int64 [N] or [N, K], floats float32
    inputs: dict[str, np.ndarray]


@dataclass
class ForwardBackwardWork:
    data: list[TrainDatum]
    loss_fn: str
    loss_config: dict[str, float]
    forward_only: bool


@dataclass
class ForwardBackwardResult:
    logprobs: list[np.ndarray]  # per datum, float32, shaped like its target_tokens
    metrics: dict[str, float]


# the most top-k prompt logprobs one sampling request may ask for, on every engine
MAX_TOPK_PROMPT_LOGPROBS = 1024
# the most alternatives reported per sampled token (OpenAI's own limit for top_logprobs)
MAX_TOPK_SAMPLE_LOGPROBS = 20


@dataclass(frozen=True)
class SampleWork:
    prompt: list[int]
    num_samples: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int | None = None
    # None: stop at the model's end-of-sequence tokens; an empty tuple disables every stop
    stop_strings: tuple[str, ...] | None = None
    stop_tokens: tuple[int, ...] | None = None
    prompt_logprobs: bool = False
    topk_prompt_logprobs: int = 0
    # the k likeliest tokens at each sampled position, under the distribution the sampled token's
    # own logprob comes from (temperature-scaled, before top-k/top-p truncation)
    topk_sample_logprobs: int = 0


@dataclass(frozen=True)
class AdapterRef:
    """One version of a sampler checkpoint: what engines load and cache adapters by.

    `version` changes whenever the checkpoint's files are written again (a named sampler
    checkpoint saved anew), so new weights always get a new `key` and never a stale cache entry.
    """

    checkpoint: str  # tinker://<model_id>/sampler_weights/<name>, or unnamed:<folder>
    version: str
    folder: Path  # PEFT adapter: adapter_config.json + adapter_model.safetensors

    @property
    def key(self) -> str:
        return f"{self.checkpoint}@{self.version}"


# (token id, logprob) of the likeliest tokens at one position, likeliest first
TopLogprobs = list[tuple[int, float]]


@dataclass
class SampledSequence:
    tokens: list[int]
    logprobs: list[float]
    stop_reason: Literal["stop", "length"]
    # one row per sampled token when SampleWork.topk_sample_logprobs > 0
    topk: list[TopLogprobs] | None = None


@dataclass(frozen=True)
class SampleDelta:
    """What one sequence of a streamed request gained since its previous delta; the deltas of a
    sequence, in order, add up to the SampledSequence that `sample` returns for the same work."""

    index: int  # which of the request's num_samples sequences
    tokens: list[int]
    logprobs: list[float]
    topk: list[TopLogprobs] | None = None
    # set on the sequence's last delta only
    stop_reason: Literal["stop", "length"] | None = None


@dataclass
class SampleResult:
    sequences: list[SampledSequence]
    # one per prompt position; position 0 has none (NaN)
    prompt_logprobs: np.ndarray | None = None
    # [len(prompt), k] ids and logprobs; row 0 is padding
    topk_prompt_ids: np.ndarray | None = None
    topk_prompt_logprobs: np.ndarray | None = None
    # prompt tokens the engine took from its prefix cache instead of computing them
    prompt_cache_hit_tokens: int = 0
