"""Futures on disk: a row when a request is accepted, its result when it resolves, so a client
that polls again after a restart gets the result (or a clear failure if the work was lost)."""

import sqlalchemy as sa

from gateway.store.rows import FutureRow
from gateway.store.tables import futures


class FutureResults:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def write(self, created: list[FutureRow], finished: list[FutureRow]) -> None:
        """Record new pending futures, then the results of finished ones (their request id,
        finished_at, content_type and body), in one transaction: one commit for a batch."""
        with self._engine.begin() as db:
            if created:
                db.execute(sa.insert(futures), [vars(row) for row in created])
            for row in finished:
                db.execute(
                    sa.update(futures)
                    .where(futures.c.request_id == row.request_id)
                    .values(finished_at=row.finished_at, content_type=row.content_type, body=row.body)
                )

    def get(self, request_id: str) -> FutureRow | None:
        with self._engine.connect() as db:
            row = db.execute(sa.select(futures).where(futures.c.request_id == request_id)).first()
        return FutureRow(**row._mapping) if row else None

    def fail_pending(self, finished_at: str, content_type: str, body: bytes) -> int:
        """Give every future still pending this result (work a stopped server never finished)."""
        with self._engine.begin() as db:
            result = db.execute(
                sa.update(futures)
                .where(futures.c.finished_at.is_(None))
                .values(finished_at=finished_at, content_type=content_type, body=body)
            )
        return result.rowcount

    def delete_finished_before(self, cutoff: str) -> int:
        with self._engine.begin() as db:
            return db.execute(sa.delete(futures).where(futures.c.finished_at < cutoff)).rowcount
