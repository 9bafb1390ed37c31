"""When sessions end, and what ending frees.

A session ends when its client says so (`ServiceClient.close`, `/sessions/{id}/finish`) or when no
heartbeat has come for `session_timeout_s` (the SDK sends one every 10 s while a client lives; a laptop that sleeps or a script killed with -9 sends none). Ending a session unloads every
training model it created from the trainer, so memory stays bounded however many clients come and
go. Its checkpoints stay: a later session loads them again.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)


def end_session(service, session_id: str) -> int:
    """Mark the session finished and unload its models; returns how many were loaded. Blocks on
    the store: call it from a worker thread."""
    service.store.sync.touch_session(session_id, finished=True)
    loaded = [m for m in service.store.sync.training_runs_of_session(session_id) if service.press.has_model(m)]
    for model_id in loaded:
        service.press.unload(model_id)
    return len(loaded)


def end_silent_sessions(service, timeout_s: float) -> list[str]:
    """End every session whose last heartbeat is older than `timeout_s`."""
    # the store's stamp format (now_iso), so the stamps compare as text
    heard_before = (datetime.now(UTC) - timedelta(seconds=timeout_s)).isoformat(timespec="microseconds")
    silent = service.store.sync.silent_sessions(heard_before)
    for session_id in silent:
        unloaded = end_session(service, session_id)
        log.info("session %s sent no heartbeat for %.0f s: ended, %d models unloaded", session_id, timeout_s, unloaded)
    return silent


async def reap_silent_sessions(service, timeout_s: float) -> None:
    """Runs for the server's lifetime, checking a few times per timeout (off the event loop)."""
    interval = max(0.5, min(30.0, timeout_s / 4))
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(end_silent_sessions, service, timeout_s)
        except Exception:  # deliberate: a failed sweep is retried at the next interval
            log.exception("ending silent sessions failed")
