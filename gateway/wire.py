"""JSON request bodies of the Tinker protocol (SDK 0.38.0), as the SDK sends them.

Unknown fields are ignored, so newer SDKs that add fields still work; a missing required field, a
value of the wrong type or out of range is a 400 naming the field (gateway/errors.py). Numbers are
bounded here, where they come in: no NaN or infinity anywhere, no integer beyond int64 (SQLite's
and numpy's limit), no TTL beyond what a date can hold.
"""

import math
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from anvil.errors import MAX_INT64
from anvil.types import MAX_TOPK_PROMPT_LOGPROBS
from gateway.errors import invalid

# a checkpoint kept longer than this is kept for good (pass no TTL)
MAX_TTL_SECONDS = 100 * 365 * 24 * 3600
MAX_LORA_RANK = 1024
MAX_NUM_SAMPLES = 1024
# Adam moves each weight by about learning_rate per step; beyond this the weights blow up at once
MAX_LEARNING_RATE = 10.0
MAX_EPS = 1.0
MAX_ID_CHARS = 256
MAX_PATH_CHARS = 1024
MAX_TAGS = 64
MAX_METADATA_CHARS = 64 * 1024
# each stop sequence is checked at every sampled token
MAX_STOPS = 256


def _finite_json(value: Any) -> Any:
    """Metadata is stored as JSON and sent back: a NaN in it would make every later answer fail."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("must not contain NaN or infinite numbers")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    if len(repr(value)) > MAX_METADATA_CHARS:
        raise ValueError(f"must be at most {MAX_METADATA_CHARS} characters as JSON")
    return value


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
StopText = Annotated[str, Field(max_length=MAX_PATH_CHARS)]
TinkerPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]
# a served model's name, or an absolute path to a model folder
ModelName = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]
SeqId = Annotated[int, Field(ge=0, le=MAX_INT64)]
Seed = Annotated[int, Field(ge=0, le=MAX_INT64)]
TtlSeconds = Annotated[int, Field(gt=0, le=MAX_TTL_SECONDS)]
Metadata = Annotated[dict[str, Any], AfterValidator(_finite_json)]


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


W = TypeVar("W", bound=Wire)


def parse(model: type[W], data: Any, prefix: str = "") -> W:
    """`data` as a `model`, or a user error naming the fields at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, prefix) from None


class SeqRef(Wire):
    """What an operation on a training model needs to take its place in the model's queue."""

    model_id: Id
    seq_id: SeqId


class CreateSession(Wire):
    tags: list[Annotated[str, Field(max_length=MAX_ID_CHARS)]] = Field(default_factory=list, max_length=MAX_TAGS)
    user_metadata: Metadata | None = None
    project_id: str | None = None
    display_name: str | None = None


class SessionRef(Wire):
    session_id: Id


class LoraConfigWire(Wire):
    rank: Annotated[int, Field(ge=1, le=MAX_LORA_RANK)] = 32
    seed: Seed | None = None
    train_unembed: bool = True
    train_mlp: bool = True
    train_attn: bool = True


class CreateModel(Wire):
    session_id: Id
    model_seq_id: SeqId
    base_model: ModelName
    user_metadata: Metadata | None = None
    lora_config: LoraConfigWire | None = None
    optimizer_config: dict[str, Any] | None = None


class ModelRef(Wire):
    model_id: Id


class AdamParamsWire(Wire):
    learning_rate: Annotated[float, Field(ge=0, le=MAX_LEARNING_RATE)] = 1e-4
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.95
    eps: Annotated[float, Field(gt=0, le=MAX_EPS)] = 1e-12
    # decoupled decay scales the weights by 1 - learning_rate * weight_decay (checked with the pair)
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    grad_clip_norm: Annotated[float, Field(ge=0)] = 0.0  # 0 disables clipping


class OptimStep(SeqRef):
    adam_params: AdamParamsWire | None = None
    optimizer_params: dict[str, Any] | None = None


class SaveWeights(SeqRef):
    path: TinkerPath | None = None
    ttl_seconds: TtlSeconds | None = None
    overwrite: bool = False
    user_metadata: Metadata | None = None


class LoadWeights(Wire):
    path: TinkerPath
    optimizer: bool = False
    # legacy form, on an existing model
    model_id: Id | None = None
    seq_id: SeqId | None = None
    # create-via-load form
    session_id: Id | None = None
    model_seq_id: SeqId | None = None
    base_model: ModelName | None = None
    user_metadata: Metadata | None = None


class SaveWeightsForSampler(SeqRef):
    path: TinkerPath | None = None
    sampling_session_seq_id: SeqId | None = None
    ttl_seconds: TtlSeconds | None = None
    user_metadata: Metadata | None = None


class CreateSamplingSession(Wire):
    session_id: Id
    sampling_session_seq_id: SeqId
    model_path: TinkerPath | None = None
    base_model: ModelName | None = None


class EncodedTextChunkWire(Wire):
    type: str = "encoded_text"
    tokens: list[int] = Field(default_factory=list)


class ModelInputWire(Wire):
    chunks: list[dict[str, Any]]


class SamplingParamsWire(Wire):
    max_tokens: Annotated[int, Field(ge=1, le=MAX_INT64)] | None = None
    seed: Seed | None = None
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOPS)] | Annotated[list[int], Field(max_length=MAX_STOPS)] | None = None
    temperature: Annotated[float, Field(ge=0)] = 1.0
    top_k: Annotated[int, Field(ge=-1, le=MAX_INT64)] = -1
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0


class Sample(Wire):
    sampling_session_id: Id | None = None
    seq_id: SeqId | None = None
    base_model: ModelName | None = None
    model_path: TinkerPath | None = None
    num_samples: Annotated[int, Field(ge=1, le=MAX_NUM_SAMPLES)] = 1
    prompt: ModelInputWire
    sampling_params: SamplingParamsWire = Field(default_factory=SamplingParamsWire)
    prompt_logprobs: bool = False
    topk_prompt_logprobs: Annotated[int, Field(ge=0, le=MAX_TOPK_PROMPT_LOGPROBS)] = 0
    topk_sample_logprobs: Annotated[int, Field(ge=0, le=MAX_INT64)] = 0
    prompt_alt_tokens_k: Annotated[int, Field(ge=0, le=MAX_INT64)] = 0
    prompt_logprobs_last_n: Annotated[int, Field(ge=0, le=MAX_INT64)] | None = None
    target_prompt_logprobs: dict[str, Any] | None = None


class RetrieveFuture(Wire):
    request_id: Id
    allow_metadata_only: bool = False


class WeightsInfo(Wire):
    tinker_path: TinkerPath


class CheckpointTtl(Wire):
    ttl_seconds: TtlSeconds | None = None
