"""Checkpoint TTLs: an expired checkpoint is gone at once (every lookup and listing skips it) and
its row and files are removed by a periodic sweep, off the event loop."""

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.store import CheckpointRow, now_iso

if TYPE_CHECKING:
    from gateway.service import Service

log = logging.getLogger(__name__)


def is_expired(row: CheckpointRow, now: datetime | None = None) -> bool:
    if row.expires_at is None:
        return False
    return datetime.fromisoformat(row.expires_at) <= (now or datetime.now(UTC))


def sweep(service: "Service") -> int:
    """Remove every expired checkpoint (row, then files); the number removed."""
    expired = service.store.sync.expired_checkpoints(now_iso())
    for row in expired:
        service.remove_checkpoint(row)
    return len(expired)


async def sweep_periodically(service: "Service", interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            removed = await asyncio.to_thread(sweep, service)
            if removed:
                log.info("removed %d expired checkpoints", removed)
        except Exception:  # deliberate: a failed sweep is retried at the next interval
            log.exception("sweeping expired checkpoints failed")
