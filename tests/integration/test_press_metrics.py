"""GET /metrics counts the press's ticks and exactly the training rows and tokens a client sent."""

import time

import httpx
import tinker
from prometheus_client.parser import text_string_to_metric_families
from tinker import types

from gateway.local_server import AnvilServer
from sdk_helpers import API_KEY, SAMPLER_ENGINE, new_trainer, sft_datum

# a tick's figures are recorded as it ends, a moment after its last future resolves
RECORDED_TIMEOUT_S = 10.0


def _scrape(server: AnvilServer) -> dict[str, float]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples if not s.labels}


def _scrape_once_recorded(server: AnvilServer, ops: int) -> dict[str, float]:
    """/metrics once `ops` operations are recorded (each waits once in the queue)."""
    deadline = time.monotonic() + RECORDED_TIMEOUT_S
    while (figures := _scrape(server))["anvil_press_queue_wait_seconds_count"] < ops:
        assert time.monotonic() < deadline, f"{ops} operations never showed on /metrics: {figures}"
        time.sleep(0.05)
    return figures


def test_a_training_step_shows_on_metrics(tmp_path):
    # a server of its own, so no other test's work is counted
    with AnvilServer(tmp_path, args=["--sampler-engine", SAMPLER_ENGINE]) as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
        trainer = new_trainer(service, rank=4, seed=50)
        data = [sft_datum(list(range(10, 30))), sft_datum(list(range(40, 52)))]
        sent_tokens = sum(datum.model_input.length for datum in data)
        before = _scrape_once_recorded(server, ops=1)  # the model's creation

        fwdbwd = trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=1e-3)).result()
        assert fwdbwd.result().metrics["loss:sum"] > 0

        after = _scrape_once_recorded(server, ops=3)
        service.close("success").result()

    assert after["anvil_press_ticks_total"] > before["anvil_press_ticks_total"]
    assert after["anvil_train_tokens_total"] - before["anvil_train_tokens_total"] == sent_tokens
    assert after["anvil_train_rows_total"] - before["anvil_train_rows_total"] == len(data)
    assert after["anvil_press_tick_tokens_sum"] - before["anvil_press_tick_tokens_sum"] == sent_tokens
    assert after["anvil_press_compute_seconds_sum"] > before["anvil_press_compute_seconds_sum"]
    assert after["anvil_press_queue_wait_seconds_count"] == 3
    assert after["anvil_press_queued_ops"] == 0
