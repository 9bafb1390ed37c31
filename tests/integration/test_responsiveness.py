"""The HTTP event loop answers promptly while the trainer computes."""

import threading
import time

import httpx
import numpy as np

from sdk_helpers import API_KEY
from sdk_helpers import new_trainer, sft_datum


def test_heartbeats_and_polls_answer_during_a_long_forward_backward(service_client, anvil_server):
    trainer = new_trainer(service_client, rank=32, seed=41)
    rng = np.random.default_rng(0)
    data = [sft_datum(rng.integers(5, 1000, size=1024).tolist()) for _ in range(24)]
    session_id = trainer.model_id.split(":")[0]
    started = time.monotonic()
    future = trainer.forward_backward(data, "cross_entropy")
    waiter = threading.Thread(target=future.result)
    waiter.start()
    latencies = []
    with httpx.Client(base_url=f"{anvil_server.base_url}/api/v1", headers={"X-API-Key": API_KEY}, timeout=10) as http:
        while waiter.is_alive():
            t0 = time.monotonic()
            assert http.post("/session_heartbeat", json={"session_id": session_id}).status_code == 200
            assert http.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
    waiter.join()
    assert future.result().metrics["loss:sum"] > 0
    elapsed = time.monotonic() - started
    assert elapsed > 1.0, f"the batch took {elapsed:.2f} s: too short to show anything"
    assert len(latencies) >= 5
    assert max(latencies) < 0.5, f"slowest heartbeat + healthz round trip: {max(latencies):.3f} s"
