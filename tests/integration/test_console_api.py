"""The console's JSON endpoints over plain HTTP: a user's runs and curves (one point per step,
what forward_backward and optim_step returned), scoped to their owner, validated, bounded, and
still whole after a restart; the server's figures are the ones /metrics shows; the pages and
their assets are served from the package and name nothing off the server."""

import re

import httpx
import pytest
import tinker
from tinker import types

from gateway.local_server import AnvilServer
from gateway.routes.console_pages import PAGES, STATIC
from sdk_helpers import TINY, sft_datum

ANN, BOB = "tml-console-ann", "tml-console-bob"
STEPS = 4


def _get(server, path: str, key: str | None = ANN, **params) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.get(server.base_url + path, headers=headers, params=params, timeout=60)


def _ok(server, path: str, key: str = ANN, **params) -> dict:
    response = _get(server, path, key, **params)
    assert response.status_code == 200, response.text
    return response.json()


def _train(server) -> tuple[str, list[dict], str]:
    """Ann trains STEPS steps (two forward_backwards in the last one) and saves two checkpoints,
    publishing one; returns the run id, what each step's results reported, and the published path."""
    service = tinker.ServiceClient(base_url=server.base_url, api_key=ANN)
    trainer = service.create_lora_training_client(base_model=TINY, rank=4, seed=1).result()
    data = [sft_datum(list(range(10, 26)))]
    reported = []
    for step in range(STEPS):
        fb = trainer.forward_backward(data, "cross_entropy").result().metrics
        if step == STEPS - 1:
            second = trainer.forward_backward(data, "cross_entropy").result().metrics
            fb = {"loss:sum": fb["loss:sum"] + second["loss:sum"]}
        trainer.forward(data, "cross_entropy").result()  # evaluation: not a point of the curve
        optim = trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result().metrics
        reported.append({**fb, **optim})
    trainer.save_state("console-state").result()
    published = trainer.save_weights_for_sampler("console-sampler").result().path
    tinker.RestClient(base_url=server.base_url, api_key=ANN).publish_checkpoint_from_tinker_path(published).result()
    service.close("success").result()
    return trainer.model_id, reported, published


def _curve(server, run_id: str, key: str = ANN) -> dict[int, dict]:
    points, after = {}, 0
    while True:
        page = _ok(server, f"/console/api/runs/{run_id}/metrics", key, after_step=after, limit=3)
        points.update({p["step"]: p["values"] for p in page["points"]})
        if not page["more"]:
            return points
        after = page["points"][-1]["step"]


def test_runs_and_curves_are_the_owners_bounded_and_survive_a_restart(tmp_path):
    with AnvilServer(tmp_path) as server:
        run_id, reported, published = _train(server)
        runs = _ok(server, "/console/api/runs")["runs"]
        assert [(r["training_run_id"], r["base_model"], r["lora_rank"], r["steps_done"]) for r in runs] == [
            (run_id, TINY, 4, STEPS)
        ]
        assert runs[0]["state"] == "session ended"
        curve = _curve(server, run_id)
        assert sorted(curve) == list(range(1, STEPS + 1))
        for step, values in curve.items():
            assert set(values) == set(reported[step - 1])
            for name, value in values.items():
                assert value == pytest.approx(reported[step - 1][name], rel=1e-6), (step, name)
        detail = _ok(server, f"/console/api/runs/{run_id}")
        assert {c["checkpoint_id"]: c["public"] for c in detail["checkpoints"]} == {
            "weights/console-state": False, "sampler_weights/console-sampler": True,
        }
        assert all(c["size_bytes"] > 0 for c in detail["checkpoints"])

        # Bob sees none of it: no runs, and Ann's run answers as an unknown one
        assert _ok(server, "/console/api/runs", BOB) == {"runs": [], "cursor": {"offset": 0, "limit": 50, "total_count": 0}}
        for path in (f"/console/api/runs/{run_id}", f"/console/api/runs/{run_id}/metrics"):
            mine, unknown = _get(server, path, BOB), _get(server, "/console/api/runs/sess-nope:train:0", BOB)
            assert mine.status_code == unknown.status_code == 404
            assert mine.json()["detail"].replace(run_id, "X") == unknown.json()["detail"].replace("sess-nope:train:0", "X")
        # ...but the checkpoint Ann published, marked as another user's; Ann's own are not listed there
        assert [c["tinker_path"] for c in _ok(server, "/console/api/published", BOB)["checkpoints"]] == [published]
        assert _ok(server, "/console/api/published")["checkpoints"] == []

        # bounded: a page holds at most the cap, whatever limit asks for
        assert _ok(server, "/console/api/runs", limit=10**6)["cursor"]["limit"] == 200
        assert len(_ok(server, f"/console/api/runs/{run_id}/metrics", limit=2**62)["points"]) == STEPS

    with AnvilServer(tmp_path) as server:
        assert _curve(server, run_id) == curve
        assert _ok(server, "/console/api/runs")["runs"][0]["steps_done"] == STEPS


@pytest.mark.parametrize(("path", "params", "status", "field"), [
    ("/console/api/runs", {"limit": 0}, 400, "limit"),
    ("/console/api/runs", {"offset": -1}, 400, "offset"),
    ("/console/api/runs", {"limit": "many"}, 400, "limit"),
    ("/console/api/runs/" + "r" * 300, {}, 400, "run_id"),
    ("/console/api/runs/sess-nope:train:0/metrics", {"after_step": -1}, 400, "after_step"),
    ("/console/api/runs/sess-nope:train:0/metrics", {"limit": 2**63}, 400, "limit"),
    ("/console/api/published", {"limit": 0}, 400, "limit"),
])
def test_bad_parameters_are_refused_naming_the_field(anvil_server, path, params, status, field):
    response = _get(anvil_server, path, **params)
    assert response.status_code == status, response.text
    assert field in response.json()["detail"]


@pytest.mark.parametrize("path", ["/console/api/me", "/console/api/runs", "/console/api/server", "/console/api/published"])
def test_every_endpoint_needs_a_key(anvil_server, path):
    for key in (None, "not-a-key"):
        response = _get(anvil_server, path, key)
        assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]


def test_the_server_figures_are_those_of_metrics(anvil_server, service_client):
    trainer = service_client.create_lora_training_client(base_model=TINY, rank=4, seed=2).result()
    trainer.forward_backward([sft_datum(list(range(5, 17)))], "cross_entropy").result()
    scrape = httpx.get(anvil_server.base_url + "/metrics").text
    figures = _ok(anvil_server, "/console/api/server")

    def scraped(name: str) -> float:
        return float(re.search(rf"^{name} (\S+)$", scrape, re.M).group(1))

    # nothing trained between the two readings (this test's process is the only client now)
    assert figures["training"]["tokens"] == scraped("anvil_train_tokens_total")
    assert figures["training"]["tick_tokens"]["count"] == scraped("anvil_press_tick_tokens_count")
    assert figures["training"]["models_loaded"] == scraped("anvil_training_models_loaded")
    assert figures["training"]["queued_ops"] == scraped("anvil_press_queued_ops")
    assert figures["sampling"]["in_flight"] == scraped("anvil_sampling_in_flight")
    assert figures["store"]["training_runs"] == scraped("anvil_store_training_runs")


def test_pages_and_assets_come_from_the_package_and_name_nothing_elsewhere(anvil_server):
    for page in ("/console", "/console/run", "/console/server"):
        response = httpx.get(anvil_server.base_url + page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        for asset in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', response.text):
            assert httpx.get(anvil_server.base_url + asset).status_code == 200, asset
    files = sorted(PAGES.iterdir()) + sorted(STATIC.iterdir())
    assert {f.suffix for f in files} == {".html", ".js", ".css"}
    for path in files:
        # the SVG namespace is a name, not a fetch
        outside = set(re.findall(r"https?://[^\s\"'`)]+", path.read_text())) - {"http://www.w3.org/2000/svg"}
        assert not outside, (path.name, outside)
    for path in (f for f in files if f.suffix == ".js"):
        for imported in re.findall(r'from "\./([^"]+)"', path.read_text()):
            assert (STATIC / imported).is_file(), (path.name, imported)
