"""Futures belong to their submitter and outlive the server: a finished one is answered after a
restart, one that was running fails as a `server` error saying so, and old ones are swept."""

import asyncio
import json

import pytest

from gateway.futures import RESTARTED, RESULT_RETENTION_S, FutureStore, Payload
from gateway.store import FutureResults, FutureRow, open_engine


@pytest.fixture
def engine(store_url):
    engine = open_engine(store_url)
    yield engine
    engine.dispose()


async def _settle() -> None:
    # resolve() hands the result to the loop; let it run
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_future_is_answered_only_to_its_owner(engine):
    async def scenario():
        futures = FutureStore(asyncio.get_running_loop(), FutureResults(engine))
        request_id = futures.create("OptimStep", "alice")
        futures.resolve(request_id, Payload.json({"metrics": {"x": 1.0}}))
        await _settle()
        assert json.loads((await futures.wait(request_id, "alice", 1.0)).body) == {"metrics": {"x": 1.0}}
        with pytest.raises(KeyError):
            await futures.wait(request_id, "bob", 1.0)
        with pytest.raises(KeyError):
            await futures.wait("req-unknown", "alice", 1.0)
        futures.close()

    asyncio.run(scenario())


def test_finished_futures_survive_a_restart_and_pending_ones_fail_as_server_errors(engine):
    async def first_run() -> tuple[str, str]:
        futures = FutureStore(asyncio.get_running_loop(), FutureResults(engine))
        finished = futures.create("Sample", "alice")
        pending = futures.create("ForwardBackward", "alice")
        futures.resolve(finished, Payload("application/x-protobuf", b"\x00\x01binary\xff"))
        await _settle()
        futures.close()
        return finished, pending

    async def second_run(finished: str, pending: str) -> None:
        futures = FutureStore(asyncio.get_running_loop(), FutureResults(engine))
        answer = await futures.wait(finished, "alice", 1.0)
        assert answer == Payload("application/x-protobuf", b"\x00\x01binary\xff")
        failure = json.loads((await futures.wait(pending, "alice", 1.0)).body)
        assert failure == {"error": RESTARTED, "category": "server"}
        for request_id in (finished, pending):
            with pytest.raises(KeyError):
                await futures.wait(request_id, "bob", 1.0)
        futures.close()

    finished, pending = asyncio.run(first_run())
    asyncio.run(second_run(finished, pending))


def test_results_older_than_the_retention_are_swept_at_start(engine):
    results = FutureResults(engine)
    results.write([FutureRow("req-old", "alice", "OptimStep", "2020-01-01"), FutureRow("req-new", "alice", "OptimStep", "2020-01-01")], [])
    results.write([], [
        FutureRow("req-old", "alice", "OptimStep", "", "2020-01-01T00:00:00.000000+00:00", "application/json", b"{}"),
        FutureRow("req-new", "alice", "OptimStep", "", "2999-01-01T00:00:00.000000+00:00", "application/json", b"{}"),
    ])
    assert RESULT_RETENTION_S < 10 * 365 * 86400

    async def restart() -> None:
        futures = FutureStore(asyncio.get_running_loop(), FutureResults(engine))
        futures.close()  # the start's sweep is written before close returns

    asyncio.run(restart())
    assert results.get("req-old") is None
    assert results.get("req-new") is not None
