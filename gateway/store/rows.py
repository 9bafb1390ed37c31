"""What the store hands out and takes in: plain frozen rows, independent of SQLAlchemy."""

from dataclasses import dataclass
from datetime import UTC, datetime


def now_iso() -> str:
    # always with microseconds, so the stamps sort as text in the order they were made
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class TrainingRunRow:
    model_id: str
    session_id: str
    owner: str
    base_model: str
    lora: dict
    created: str
    last_request: str
    user_metadata: dict


@dataclass(frozen=True)
class CheckpointRow:
    model_id: str
    checkpoint_id: str  # "<kind>/<name>", kind in weights | sampler_weights
    kind: str
    folder: str
    created: str
    size_bytes: int
    public: bool
    expires_at: str | None
    user_metadata: dict

    @property
    def tinker_path(self) -> str:
        return f"tinker://{self.model_id}/{self.checkpoint_id}"


@dataclass(frozen=True)
class SamplingSessionRow:
    sampling_session_id: str
    session_id: str
    owner: str
    base_model: str
    model_path: str | None
    adapter_folder: str | None


@dataclass(frozen=True)
class FutureRow:
    """A future's durable record: pending until `finished_at` and the result are set."""

    request_id: str
    owner: str
    request_type: str
    created: str
    finished_at: str | None = None
    content_type: str | None = None
    body: bytes | None = None


@dataclass(frozen=True)
class ApiKeyRow:
    key_id: str
    user_id: str
    user_name: str
    prefix: str  # the key's first characters, to recognise it in listings
    created: str
    revoked_at: str | None
