"""The server's state and the lookups every route shares: who owns what, and where files live."""

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from anvil import checkpoint_folders
from anvil.base_models import BaseModelRegistry, UnknownBaseModel
from anvil.ray_cluster import ClusterSettings
from gateway.checkpoint_expiry import is_expired
from gateway.errors import NotFound, UserError
from gateway.futures import FutureStore
from gateway.press import Press
from gateway.quotas import TRAIN_PIECE_TOKENS, Limits
from gateway.sample_scheduler import SampleScheduler
from gateway.session_lifetimes import reap_silent_sessions
from gateway.training_curves import CurveRecorder
from gateway.store import (
    ApiKeys,
    CheckpointRow,
    FutureResults,
    MetadataStore,
    OffLoop,
    RunCurves,
    TrainingRunRow,
    database_url,
    open_engine,
    store_executor,
)
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
    # what get_info answers as a model's tokenizer_id, by model name (`--tokenizer NAME=ID`)
    tokenizers: dict[str, str] = field(default_factory=dict)
    # how long retrieve_future holds a poll open; below the SDK's 45 s read timeout
    long_poll_s: float = 25.0
    # a session without a heartbeat for this long ends and its models are unloaded
    session_timeout_s: float = 300.0
    sampling: FleetConfig = field(default_factory=FleetConfig)
    # a SQLAlchemy URL; None: $ANVIL_DATABASE_URL, else SQLite in the data dir
    database_url: str | None = None
    # True: only keys made by `anvil keys create` are accepted; False (open mode): any well-formed
    # tml- key is accepted, as its own user unless it is a created key
    require_keys: bool = False
    limits: Limits = field(default_factory=Limits)
    # a forward_backward over this many tokens runs as pieces, other users' work between them
    train_piece_tokens: int = TRAIN_PIECE_TOKENS
    # how often expired checkpoints are removed from disk (they are unreachable as soon as they expire)
    checkpoint_sweep_s: float = 5.0
    # None: trainer and sampler engines run in this process tree, no Ray imported; else Ray actors
    cluster: ClusterSettings | None = None


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
        self.engine = open_engine(database_url(settings.data_dir, settings.database_url))
        self._store_threads = store_executor()
        self.store = OffLoop(MetadataStore(self.engine), self._store_threads)
        self.keys = OffLoop(ApiKeys(self.engine), self._store_threads)
        self.futures = FutureStore(loop, FutureResults(self.engine))
        if settings.cluster is None:
            self.trainer_pool = InProcessTrainerPool(TrainerWorker(self.registry))
            self.fleet = SamplerFleet(self.registry, settings.sampling)
            self._close_backends = lambda: None
        else:
            from gateway.ray_backends import ray_backends  # Ray is imported on a cluster only

            self.trainer_pool, self.fleet, self._close_backends = ray_backends(
                settings.cluster, settings.sampling, self.registry
            )
        self.run_curves = OffLoop(RunCurves(self.engine), self._store_threads)
        self.curves = CurveRecorder(self.run_curves.sync)
        self.press = Press(
            self.trainer_pool, self.futures, piece_tokens=settings.train_piece_tokens, curves=self.curves
        )
        # sampling runs beside training, on the scheduler's own thread and event loop
        self.sampling = SampleScheduler(self.fleet, self.futures)
        self._base_models: dict[str, BaseModelInfo] = {}
        self._reaper: asyncio.Task | None = None

    def start(self) -> None:
        # before any save: what a kill left half-done goes, every recorded checkpoint stays
        checkpoint_folders.clean(self.data_dir, self.store.sync.checkpoint_folders())
        self.press.start()
        self.sampling.start()
        self._reaper = asyncio.get_running_loop().create_task(
            reap_silent_sessions(self, self.settings.session_timeout_s)
        )

    def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        self.press.stop()
        self.curves.close()
        self.sampling.stop()
        self._close_backends()
        self.futures.close()
        self._store_threads.shutdown(wait=True)
        self.engine.dispose()

    async def base_model(self, name: str) -> BaseModelInfo:
        """Resolve a served base model (building the built-in one on first use, off the loop)."""
        if name not in self._base_models:
            try:
                path = await asyncio.to_thread(self.registry.resolve, name)
            except UnknownBaseModel as exc:
                raise UserError(str(exc), field="base_model") from None
            config = json.loads((path / "config.json").read_text())
            self._base_models[name] = BaseModelInfo(
                name=name,
                path=path,
                vocab_size=int(config["vocab_size"]),
                max_context=int(config.get("max_position_embeddings") or 1 << 20),
            )
        return self._base_models[name]

    def tokenizer_id(self, base: BaseModelInfo) -> str:
        """What the SDK's get_tokenizer() loads. A model served under a hub name (`--model
        Qwen/Qwen3-8B=DIR`) answers that name, so a client on another machine loads the tokenizer as
        it would against hosted Tinker; others answer their folder, loadable on this machine only.
        The operator's `--tokenizer NAME=ID` wins over both."""
        if base.name in self.settings.tokenizers:
            return self.settings.tokenizers[base.name]
        if base.name in self.settings.models and "/" in base.name:
            return base.name
        return str(base.path)

    # ownership
    async def owned_session(self, owner: str, session_id: str) -> None:
        if await self.store.session_owner(session_id) != owner:
            raise NotFound(f"session_id {session_id!r} not found", field="session_id")

    async def open_session(self, owner: str, session_id: str) -> None:
        """A session of the caller's that can still create models."""
        await self.owned_session(owner, session_id)
        if await self.store.session_finished(session_id):
            raise UserError(
                f"session {session_id!r} has ended (closed, or no heartbeat for "
                f"{self.settings.session_timeout_s:.0f} s); create a new ServiceClient",
                field="session_id",
            )

    async def owned_run(self, owner: str, model_id: str) -> TrainingRunRow:
        run = await self.store.training_run(model_id)
        if run is None or run.owner != owner:
            raise NotFound(f"model_id {model_id!r} not found", field="model_id")
        return run

    async def live_run(self, owner: str, model_id: str) -> TrainingRunRow:
        """A training run that can take work now (its adapter is loaded in the trainer)."""
        run = await self.owned_run(owner, model_id)
        if not self.press.has_model(model_id):
            raise NotFound(
                f"model_id {model_id!r} is not loaded on this server (it was unloaded, its session ended, "
                "or it was created before a restart); create a new training client from one of its checkpoints",
                field="model_id",
            )
        return run

    async def readable_checkpoint(self, owner: str, tinker_path: str) -> CheckpointRow:
        model_id, kind, name = parse_tinker_path(tinker_path)
        row = await self.checkpoint(model_id, f"{kind}/{name}")
        run = await self.store.training_run(model_id)
        if row is None or run is None or (run.owner != owner and not row.public):
            raise NotFound(f"checkpoint {tinker_path!r} not found")
        if not Path(row.folder).is_dir():
            raise NotFound(f"checkpoint {tinker_path!r} has no files on this server any more")
        return row

    # checkpoints: an expired one is absent from here on, whether or not the sweep removed it yet
    async def checkpoint(self, model_id: str, checkpoint_id: str) -> CheckpointRow | None:
        row = await self.store.checkpoint(model_id, checkpoint_id)
        return None if row is None or is_expired(row) else row

    async def checkpoints_of_run(self, model_id: str) -> list[CheckpointRow]:
        return [row for row in await self.store.checkpoints_of_run(model_id) if not is_expired(row)]

    def checkpoint_folder(self, model_id: str, kind: str, name: str) -> Path:
        return checkpoint_folders.named_folder(self.data_dir, model_id, kind, name)

    def remove_checkpoint(self, row: CheckpointRow) -> None:
        """Unlist, then remove the files (a kill in between leaves files that the next start removes).
        Blocks on the store and the disk: call it from a worker thread."""
        self.store.sync.delete_checkpoint(row.model_id, row.checkpoint_id, row.folder)
        checkpoint_folders.remove(Path(row.folder))


def open_user_id(api_key: str) -> str:
    """The user an open-mode key that `anvil keys create` did not make stands for: the key is not
    stored; its hash is the user's id."""
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

