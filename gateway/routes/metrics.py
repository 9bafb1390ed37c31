"""`GET /metrics`: the server's own figures in Prometheus text format (no user data in them)."""

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.deps import ServiceDep
from gateway.service import Service
from gateway.store.sizes import StoreSizes, store_sizes

router = APIRouter()


class SamplingCollector:
    """Reads the sampling scheduler and every started engine at scrape time."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self):
        scheduler = self.service.sampling
        yield GaugeMetricFamily(
            "anvil_sampling_in_flight", "sampling requests accepted and not yet answered", value=scheduler.in_flight
        )
        requests = CounterMetricFamily("anvil_sampling_requests", "sampling requests by outcome", labels=["outcome"])
        requests.add_metric(["ok"], scheduler.finished)
        requests.add_metric(["failed"], scheduler.failed)
        yield requests
        labels = ["engine", "kind", "base_model"]
        info = GaugeMetricFamily("anvil_sampler_engine_up", "1 for every started sampling engine", labels=labels)
        in_flight = GaugeMetricFamily("anvil_sampler_queue_depth", "requests in flight on the engine", labels=labels)
        done = CounterMetricFamily("anvil_sampler_requests", "requests the engine answered", labels=labels)
        tokens = CounterMetricFamily("anvil_sampler_tokens_generated", "tokens the engine generated", labels=labels)
        adapters = GaugeMetricFamily("anvil_sampler_adapters_resident", "adapters loaded on the engine", labels=labels)
        restarts = CounterMetricFamily("anvil_sampler_restarts", "times the engine died and was replaced", labels=labels)
        for name, stats, restart_count in scheduler.fleet.stats():
            values = [name, stats.kind, stats.base_model]
            info.add_metric(values, 1)
            in_flight.add_metric(values, stats.in_flight)
            done.add_metric(values, stats.requests_done)
            tokens.add_metric(values, stats.tokens_generated)
            adapters.add_metric(values, stats.adapters_resident)
            restarts.add_metric(values, restart_count)
        yield from (info, in_flight, done, tokens, adapters, restarts)


class PressCollector:
    """The press's per-tick figures, and how much training work waits for a tick."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self):
        press = self.service.press
        yield GaugeMetricFamily("anvil_press_queued_ops", "training operations waiting for a tick", value=press.queued_ops())
        yield GaugeMetricFamily(
            "anvil_training_models_loaded", "training models (LoRA adapters with optimizer state) loaded in the trainer",
            value=press.loaded_models(),
        )
        yield from press.metrics.collect()


class StoreCollector:
    """The store's size, read (off the event loop) just before the scrape is rendered."""

    def __init__(self, sizes: StoreSizes):
        self.sizes = sizes

    def collect(self):
        sizes = self.sizes
        yield GaugeMetricFamily("anvil_store_database_bytes", "size of the database (SQLite file and its WAL)",
                                value=sizes.database_bytes)
        yield GaugeMetricFamily("anvil_store_checkpoint_bytes", "bytes of every listed checkpoint", value=sizes.checkpoint_bytes)
        yield GaugeMetricFamily("anvil_store_checkpoints", "checkpoints listed", value=sizes.checkpoints)
        yield GaugeMetricFamily("anvil_store_training_runs", "training runs recorded", value=sizes.training_runs)
        yield GaugeMetricFamily("anvil_store_sessions", "sessions recorded", value=sizes.sessions)


@router.get("/metrics")
async def metrics(request: Request, service: ServiceDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(request.app.state.request_metrics)
    registry.register(StoreCollector(await asyncio.to_thread(store_sizes, service.engine)))
    registry.register(SamplingCollector(service))
    registry.register(PressCollector(service))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
