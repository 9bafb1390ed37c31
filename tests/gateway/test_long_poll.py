"""retrieve_future holds the poll open, answers try_again when nothing is ready, and returns the
result as soon as it is."""

import threading
import time

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.futures import Payload
from gateway.service import Settings, open_user_id

HEADERS = {"X-API-Key": "tml-long-poll"}


def test_pending_future_is_held_then_try_again(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, long_poll_s=0.5))) as client:
        service = client.app.state.service
        request_id = client.portal.call(_create, service)
        started = time.monotonic()
        answer = client.post("/api/v1/retrieve_future", json={"request_id": request_id}, headers=HEADERS)
        held = time.monotonic() - started
        assert answer.status_code == 408
        assert answer.json() == {"type": "try_again", "request_id": request_id, "queue_state": "active"}
        assert 0.45 <= held < 5.0

        # resolved while a poll is waiting: the poll returns at once with the result
        timer = threading.Timer(0.2, service.futures.resolve, (request_id, Payload.json({"metrics": {}})))
        timer.start()
        service.settings.long_poll_s = 30.0
        started = time.monotonic()
        answer = client.post("/api/v1/retrieve_future", json={"request_id": request_id}, headers=HEADERS)
        assert answer.json() == {"metrics": {}}
        assert time.monotonic() - started < 5.0


async def _create(service) -> str:
    return service.futures.create("OptimStep", open_user_id(HEADERS["X-API-Key"]))
