"""GET /metrics counts requests and their latency by route template, never by raw path."""

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.service import Settings

HEADERS = {"X-API-Key": "tml-request-metrics"}


def test_requests_are_counted_by_route_template(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        for _ in range(3):
            assert client.get("/api/v1/healthz").status_code == 200
        for run in ("sess-a:train:0", "sess-b:train:1"):
            assert client.get(f"/api/v1/training_runs/{run}", headers=HEADERS).status_code == 404
        assert client.get("/no/such/route").status_code == 404
        assert client.get("/v1/models", headers={"Authorization": "Bearer tml-request-metrics"}).status_code == 200
        text = client.get("/metrics").text
    assert 'anvil_http_requests_total{method="GET",route="/api/v1/healthz",status="2xx"} 3.0' in text
    assert 'anvil_http_requests_total{method="GET",route="/api/v1/training_runs/{run_id}",status="4xx"} 2.0' in text
    assert 'anvil_http_requests_total{method="GET",route="unmatched",status="4xx"} 1.0' in text
    assert 'anvil_http_requests_total{method="GET",route="/v1/models",status="2xx"} 1.0' in text
    assert "sess-a" not in text
    assert 'anvil_http_request_seconds_count{method="GET",route="/api/v1/healthz"} 3.0' in text
    assert "anvil_training_models_loaded 0.0" in text
    assert "anvil_store_checkpoints 0.0" in text
    database = next(line for line in text.splitlines() if line.startswith("anvil_store_database_bytes "))
    assert float(database.split()[1]) > 0
