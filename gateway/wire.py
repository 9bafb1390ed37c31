"""JSON request bodies of the Tinker protocol (SDK 0.38.0), as the SDK sends them.

Unknown fields are ignored, so newer SDKs that add fields still work; missing required fields are a
422 with a body naming them.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateSession(Wire):
    tags: list[str] = Field(default_factory=list)
    user_metadata: dict[str, Any] | None = None
    project_id: str | None = None
    display_name: str | None = None


class SessionRef(Wire):
    session_id: str


class LoraConfigWire(Wire):
    rank: int = 32
    seed: int | None = None
    train_unembed: bool = True
    train_mlp: bool = True
    train_attn: bool = True


class CreateModel(Wire):
    session_id: str
    model_seq_id: int
    base_model: str
    user_metadata: dict[str, Any] | None = None
    lora_config: LoraConfigWire | None = None
    optimizer_config: dict[str, Any] | None = None


class ModelRef(Wire):
    model_id: str


class AdamParamsWire(Wire):
    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0


class OptimStep(Wire):
    model_id: str
    seq_id: int
    adam_params: AdamParamsWire | None = None
    optimizer_params: dict[str, Any] | None = None


class SaveWeights(Wire):
    model_id: str
    seq_id: int
    path: str | None = None
    ttl_seconds: int | None = None
    overwrite: bool = False
    user_metadata: dict[str, Any] | None = None


class LoadWeights(Wire):
    path: str
    optimizer: bool = False
    # legacy form, on an existing model
    model_id: str | None = None
    seq_id: int | None = None
    # create-via-load form
    session_id: str | None = None
    model_seq_id: int | None = None
    user_metadata: dict[str, Any] | None = None


class SaveWeightsForSampler(Wire):
    model_id: str
    seq_id: int
    path: str | None = None
    sampling_session_seq_id: int | None = None
    ttl_seconds: int | None = None
    user_metadata: dict[str, Any] | None = None


class CreateSamplingSession(Wire):
    session_id: str
    sampling_session_seq_id: int
    model_path: str | None = None
    base_model: str | None = None


class EncodedTextChunkWire(Wire):
    type: str = "encoded_text"
    tokens: list[int] = Field(default_factory=list)


class ModelInputWire(Wire):
    chunks: list[dict[str, Any]]


class SamplingParamsWire(Wire):
    max_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | list[int] | None = None
    temperature: float = 1.0
    top_k: int = -1
    top_p: float = 1.0


class Sample(Wire):
    sampling_session_id: str | None = None
    seq_id: int | None = None
    base_model: str | None = None
    model_path: str | None = None
    num_samples: int = 1
    prompt: ModelInputWire
    sampling_params: SamplingParamsWire = Field(default_factory=SamplingParamsWire)
    prompt_logprobs: bool = False
    topk_prompt_logprobs: int = 0
    topk_sample_logprobs: int = 0
    prompt_alt_tokens_k: int = 0
    prompt_logprobs_last_n: int | None = None
    target_prompt_logprobs: dict[str, Any] | None = None


class RetrieveFuture(Wire):
    request_id: str
    allow_metadata_only: bool = False


class WeightsInfo(Wire):
    tinker_path: str


class CheckpointTtl(Wire):
    ttl_seconds: int | None = None
