"""Sessions, training runs, checkpoints and sampling sessions.

Checkpoint files live on disk beside the database; a checkpoint row is written only after its
files are complete, so every row listed names a checkpoint that loads. Each method is one
transaction; call them from worker threads (gateway/store/off_loop.py), never on the event loop.
"""

import sqlalchemy as sa

from gateway.store.rows import CheckpointRow, SamplingSessionRow, TrainingRunRow, now_iso
from gateway.store.tables import checkpoints, idempotency_keys, sampling_sessions, sessions, training_runs
from gateway.store.upsert import insert_or_ignore, insert_or_replace


class MetadataStore:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    # sessions
    def add_session(
        self, session_id: str, owner: str, tags: list[str], user_metadata: dict, idempotency_key: str | None = None
    ) -> str:
        """Create the session; with an idempotency key the caller used before, the session that
        key created instead (nothing new is made). Returns the session's id."""
        if idempotency_key is not None and (earlier := self._session_of_key(owner, idempotency_key)) is not None:
            return earlier
        stamp = now_iso()
        try:
            with self._engine.begin() as db:
                insert_or_ignore(db, sessions, {
                    "session_id": session_id, "owner": owner, "created": stamp, "last_heartbeat": stamp,
                    "tags": list(tags), "user_metadata": user_metadata, "finished": False,
                })
                if idempotency_key is not None:
                    key = {"owner": owner, "key": idempotency_key, "session_id": session_id, "created": stamp}
                    db.execute(sa.insert(idempotency_keys).values(key))
        except sa.exc.IntegrityError:
            # a concurrent retry with the same key won the race: its session stands, this one is rolled back
            if idempotency_key is None or (earlier := self._session_of_key(owner, idempotency_key)) is None:
                raise
            return earlier
        return session_id

    def _session_of_key(self, owner: str, idempotency_key: str) -> str | None:
        query = sa.select(idempotency_keys.c.session_id).where(
            idempotency_keys.c.owner == owner, idempotency_keys.c.key == idempotency_key
        )
        with self._engine.connect() as db:
            return db.scalar(query)

    def session_owner(self, session_id: str) -> str | None:
        with self._engine.connect() as db:
            return db.scalar(sa.select(sessions.c.owner).where(sessions.c.session_id == session_id))

    def touch_session(self, session_id: str, finished: bool = False) -> None:
        changes: dict = {"last_heartbeat": now_iso()}
        if finished:
            changes["finished"] = True
        with self._engine.begin() as db:
            db.execute(sa.update(sessions).where(sessions.c.session_id == session_id).values(changes))

    def session_finished(self, session_id: str) -> bool:
        with self._engine.connect() as db:
            return bool(db.scalar(sa.select(sessions.c.finished).where(sessions.c.session_id == session_id)))

    def finished_sessions(self, session_ids: list[str]) -> set[str]:
        """Those of the sessions that have finished."""
        if not session_ids:
            return set()
        query = sa.select(sessions.c.session_id).where(sessions.c.session_id.in_(session_ids), sessions.c.finished)
        with self._engine.connect() as db:
            return set(db.scalars(query))

    def silent_sessions(self, heard_before: str) -> list[str]:
        """Sessions not finished whose last heartbeat is older than `heard_before` (now_iso format)."""
        query = sa.select(sessions.c.session_id).where(
            sessions.c.finished == sa.false(), sessions.c.last_heartbeat < heard_before
        )
        with self._engine.connect() as db:
            return list(db.scalars(query))

    def sessions_of(self, owner: str) -> list[str]:
        query = sa.select(sessions.c.session_id).where(sessions.c.owner == owner).order_by(sessions.c.created)
        with self._engine.connect() as db:
            return list(db.scalars(query))

    # training runs
    def add_training_run(self, run: TrainingRunRow) -> None:
        with self._engine.begin() as db:
            insert_or_replace(db, training_runs, vars(run))

    def touch_training_run(self, model_id: str) -> None:
        with self._engine.begin() as db:
            db.execute(
                sa.update(training_runs).where(training_runs.c.model_id == model_id).values(last_request=now_iso())
            )

    def training_run(self, model_id: str) -> TrainingRunRow | None:
        with self._engine.connect() as db:
            row = db.execute(sa.select(training_runs).where(training_runs.c.model_id == model_id)).first()
        return TrainingRunRow(**row._mapping) if row else None

    def training_runs(self, owner: str, limit: int, offset: int) -> tuple[list[TrainingRunRow], int]:
        mine = training_runs.c.owner == owner
        query = sa.select(training_runs).where(mine).order_by(training_runs.c.created.desc()).limit(limit).offset(offset)
        with self._engine.connect() as db:
            rows = [TrainingRunRow(**row._mapping) for row in db.execute(query)]
            total = db.scalar(sa.select(sa.func.count()).select_from(training_runs).where(mine))
        return rows, total

    def training_runs_of_session(self, session_id: str) -> list[str]:
        query = (
            sa.select(training_runs.c.model_id)
            .where(training_runs.c.session_id == session_id)
            .order_by(training_runs.c.created)
        )
        with self._engine.connect() as db:
            return list(db.scalars(query))

    # checkpoints
    def add_checkpoint(self, row: CheckpointRow) -> None:
        with self._engine.begin() as db:
            insert_or_replace(db, checkpoints, vars(row))

    def checkpoint(self, model_id: str, checkpoint_id: str) -> CheckpointRow | None:
        query = sa.select(checkpoints).where(_checkpoint_is(model_id, checkpoint_id))
        with self._engine.connect() as db:
            row = db.execute(query).first()
        return CheckpointRow(**row._mapping) if row else None

    def checkpoints_of_run(self, model_id: str) -> list[CheckpointRow]:
        query = sa.select(checkpoints).where(checkpoints.c.model_id == model_id).order_by(checkpoints.c.created)
        with self._engine.connect() as db:
            return [CheckpointRow(**row._mapping) for row in db.execute(query)]

    def checkpoints_of_owner(self, owner: str, limit: int, offset: int) -> tuple[list[CheckpointRow], int]:
        joined = checkpoints.join(training_runs, checkpoints.c.model_id == training_runs.c.model_id)
        mine = training_runs.c.owner == owner
        query = (
            sa.select(checkpoints).select_from(joined).where(mine)
            .order_by(checkpoints.c.created.desc()).limit(limit).offset(offset)
        )
        with self._engine.connect() as db:
            rows = [CheckpointRow(**row._mapping) for row in db.execute(query)]
            total = db.scalar(sa.select(sa.func.count()).select_from(joined).where(mine))
        return rows, total

    def checkpoints_readable_by(self, owner: str, kind: str, limit: int) -> list[tuple[CheckpointRow, str, str]]:
        """(checkpoint, its base model, its owner) for the `kind` checkpoints of `owner` and the
        published ones of everybody, newest first."""
        readable = sa.and_(checkpoints.c.kind == kind, sa.or_(training_runs.c.owner == owner, checkpoints.c.public))
        return self._checkpoints_with_runs(readable, limit)

    def published_by_others(self, owner: str, limit: int) -> list[tuple[CheckpointRow, str]]:
        """(checkpoint, its base model) for the checkpoints other users published, newest first."""
        published = sa.and_(checkpoints.c.public, training_runs.c.owner != owner)
        return [(row, base_model) for row, base_model, _ in self._checkpoints_with_runs(published, limit)]

    def _checkpoints_with_runs(self, where, limit: int) -> list[tuple[CheckpointRow, str, str]]:
        """(checkpoint, its run's base model, its run's owner) where `where` holds, newest first."""
        joined = checkpoints.join(training_runs, checkpoints.c.model_id == training_runs.c.model_id)
        query = (
            sa.select(checkpoints, training_runs.c.base_model.label("run_base_model"), training_runs.c.owner.label("run_owner"))
            .select_from(joined)
            .where(where)
            .order_by(checkpoints.c.created.desc())
            .limit(limit)
        )
        listed = []
        with self._engine.connect() as db:
            for row in db.execute(query):
                values = dict(row._mapping)
                base_model, run_owner = values.pop("run_base_model"), values.pop("run_owner")
                listed.append((CheckpointRow(**values), base_model, run_owner))
        return listed

    def delete_checkpoint(self, model_id: str, checkpoint_id: str, folder: str | None = None) -> None:
        """With `folder`: only while the row still names that version (a save may have replaced it)."""
        condition = _checkpoint_is(model_id, checkpoint_id)
        if folder is not None:
            condition = sa.and_(condition, checkpoints.c.folder == folder)
        with self._engine.begin() as db:
            db.execute(sa.delete(checkpoints).where(condition))

    def expired_checkpoints(self, now: str) -> list[CheckpointRow]:
        """Checkpoints whose expires_at (now_iso format, UTC) is at or before `now`."""
        query = sa.select(checkpoints).where(checkpoints.c.expires_at.is_not(None), checkpoints.c.expires_at <= now)
        with self._engine.connect() as db:
            return [CheckpointRow(**row._mapping) for row in db.execute(query)]

    def checkpoint_folders(self) -> list[str]:
        """The folder of every checkpoint row: the versions on disk that are checkpoints."""
        with self._engine.connect() as db:
            return list(db.scalars(sa.select(checkpoints.c.folder)))

    def set_checkpoint_public(self, model_id: str, checkpoint_id: str, public: bool) -> None:
        with self._engine.begin() as db:
            db.execute(sa.update(checkpoints).where(_checkpoint_is(model_id, checkpoint_id)).values(public=public))

    def set_checkpoint_expiry(self, model_id: str, checkpoint_id: str, expires_at: str | None) -> None:
        with self._engine.begin() as db:
            db.execute(
                sa.update(checkpoints).where(_checkpoint_is(model_id, checkpoint_id)).values(expires_at=expires_at)
            )

    # sampling sessions
    def add_sampling_session(self, row: SamplingSessionRow) -> None:
        with self._engine.begin() as db:
            insert_or_ignore(db, sampling_sessions, vars(row))

    def sampling_session(self, sampling_session_id: str) -> SamplingSessionRow | None:
        query = sa.select(sampling_sessions).where(sampling_sessions.c.sampling_session_id == sampling_session_id)
        with self._engine.connect() as db:
            row = db.execute(query).first()
        return SamplingSessionRow(**row._mapping) if row else None

    def sampling_sessions_of_session(self, session_id: str) -> list[str]:
        query = sa.select(sampling_sessions.c.sampling_session_id).where(sampling_sessions.c.session_id == session_id)
        with self._engine.connect() as db:
            return list(db.scalars(query))


def _checkpoint_is(model_id: str, checkpoint_id: str):
    return sa.and_(checkpoints.c.model_id == model_id, checkpoints.c.checkpoint_id == checkpoint_id)
