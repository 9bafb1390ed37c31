"""The server's state and the lookups every route shares: who owns what, and where files live."""

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from anvil import checkpoint_folders
from anvil.base_models import BaseModelRegistry, UnknownBaseModel
from gateway.checkpoint_expiry import is_expired
from gateway.errors import NotFound, UserError
from gateway.futures import FutureStore
from gateway.metadata import CheckpointRow, MetadataStore, TrainingRunRow
from gateway.press import Press
from gateway.sample_scheduler import SampleScheduler
from sampler.fleet import FleetConfig, SamplerFleet
from trainer.pool import InProcessTrainerPool
from trainer.worker import TrainerWorker

CHECKPOINT_KINDS = ("weights", "sampler_weights")
# unnamed sampler weights kept per model; a sampling client on an older save gets a clear 404
KEPT_EPHEMERAL_SAVES = 32
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


@dataclass
class Settings:
    data_dir: Path
    models: dict[str, Path] = field(default_factory=dict)
    # how long retrieve_future holds a poll open; below the SDK's 45 s read timeout
    long_poll_s: float = 25.0
    sampling: FleetConfig = field(default_factory=FleetConfig)
    # how often expired checkpoints are removed from disk (they are unreachable as soon as they expire)
    checkpoint_sweep_s: float = 5.0


@dataclass(frozen=True)
class BaseModelInfo:
    name: str
    path: Path
    vocab_size: int
    max_context: int


class Service:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop):
        self.settings = settings
        self.data_dir = settings.data_dir
        self.registry = BaseModelRegistry(settings.data_dir / "models", dict(settings.models))
        self.metadata = MetadataStore(settings.data_dir / "metadata.sqlite")
        self.futures = FutureStore(loop)
        self.trainer_pool = InProcessTrainerPool(TrainerWorker(self.registry))
        self.press = Press(self.trainer_pool, self.futures)
        self.fleet = SamplerFleet(self.registry, settings.sampling)
        # sampling runs beside training, on the scheduler's own thread and event loop
        self.sampling = SampleScheduler(self.fleet, self.futures)
        # X-Idempotency-Key of create_session → session id
        self.session_keys: dict[str, str] = {}
        self._base_models: dict[str, BaseModelInfo] = {}

    def start(self) -> None:
        # before any save: what a kill left half-done goes, every recorded checkpoint stays
        checkpoint_folders.clean(self.data_dir, self.metadata.checkpoint_folders())
        self.press.start()
        self.sampling.start()

    def stop(self) -> None:
        self.press.stop()
        self.sampling.stop()

    async def base_model(self, name: str) -> BaseModelInfo:
        """Resolve a served base model (building the built-in one on first use, off the loop)."""
        if name not in self._base_models:
            try:
                path = await asyncio.to_thread(self.registry.resolve, name)
            except UnknownBaseModel as exc:
                raise UserError(str(exc)) from None
            config = json.loads((path / "config.json").read_text())
            self._base_models[name] = BaseModelInfo(
                name=name,
                path=path,
                vocab_size=int(config["vocab_size"]),
                max_context=int(config.get("max_position_embeddings") or 1 << 20),
            )
        return self._base_models[name]

    # ownership
    def owned_session(self, owner: str, session_id: str) -> None:
        if self.metadata.session_owner(session_id) != owner:
            raise NotFound(f"session {session_id!r} not found")

    def owned_run(self, owner: str, model_id: str) -> TrainingRunRow:
        run = self.metadata.training_run(model_id)
        if run is None or run.owner != owner:
            raise NotFound(f"model_id {model_id!r} not found")
        return run

    def live_run(self, owner: str, model_id: str) -> TrainingRunRow:
        """A training run that can take work now (its adapter is loaded in the trainer)."""
        run = self.owned_run(owner, model_id)
        if not self.press.has_model(model_id):
            raise NotFound(
                f"model_id {model_id!r} is not loaded on this server (it was created before a restart); "
                "create a new training client from one of its checkpoints"
            )
        return run

    def readable_checkpoint(self, owner: str, tinker_path: str) -> CheckpointRow:
        model_id, kind, name = parse_tinker_path(tinker_path)
        row = self.checkpoint(model_id, f"{kind}/{name}")
        run = self.metadata.training_run(model_id)
        if row is None or run is None or (run.owner != owner and not row.public):
            raise NotFound(f"checkpoint {tinker_path!r} not found")
        if not Path(row.folder).is_dir():
            raise NotFound(f"checkpoint {tinker_path!r} has no files on this server any more")
        return row

    # checkpoints: an expired one is absent from here on, whether or not the sweep removed it yet
    def checkpoint(self, model_id: str, checkpoint_id: str) -> CheckpointRow | None:
        row = self.metadata.checkpoint(model_id, checkpoint_id)
        return None if row is None or is_expired(row) else row

    def checkpoints_of_run(self, model_id: str) -> list[CheckpointRow]:
        return [row for row in self.metadata.checkpoints_of_run(model_id) if not is_expired(row)]

    def checkpoint_folder(self, model_id: str, kind: str, name: str) -> Path:
        return checkpoint_folders.named_folder(self.data_dir, model_id, kind, name)

    def remove_checkpoint(self, row: CheckpointRow) -> None:
        """Unlist, then remove the files (a kill in between leaves files that the next start removes)."""
        self.metadata.delete_checkpoint(row.model_id, row.checkpoint_id, row.folder)
        checkpoint_folders.remove(Path(row.folder))


def owner_of_key(api_key: str) -> str:
    # keys are never stored; a user is the hash of their key
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def parse_tinker_path(path: str) -> tuple[str, str, str]:
    """`tinker://<model_id>/<kind>/<name>` → (model_id, kind, name)."""
    prefix = "tinker://"
    parts = path[len(prefix) :].split("/") if path.startswith(prefix) else []
    if len(parts) != 3 or not all(parts):
        raise UserError(f"{path!r} is not a checkpoint path; expected tinker://<model_id>/<kind>/<name>")
    if parts[1] not in CHECKPOINT_KINDS:
        raise UserError(f"{path!r}: checkpoint kind must be one of {', '.join(CHECKPOINT_KINDS)}")
    return parts[0], parts[1], parts[2]


def check_checkpoint_name(name: str | None) -> str:
    if not name or not _NAME.match(name):
        raise UserError(
            f"checkpoint name {name!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'"
        )
    return name

