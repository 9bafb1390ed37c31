"""The server's own figures as plain data for the console, read from the sources `GET /metrics`
renders (the press and its PressMetrics, the sampling scheduler and its fleet, the store's size):
the same numbers, never parsed back out of the Prometheus text."""

import time
from dataclasses import asdict

from prometheus_client import Metric

from gateway.service import Service
from gateway.store.sizes import StoreSizes


def server_figures(service: Service, sizes: StoreSizes) -> dict:
    press, scheduler = service.press, service.sampling
    figures = press.metrics
    engines = [
        {
            "engine": name, "kind": stats.kind, "base_model": stats.base_model, "queue_depth": stats.in_flight,
            "requests_done": stats.requests_done, "tokens_generated": stats.tokens_generated,
            "adapters_resident": stats.adapters_resident, "restarts": restarts,
        }
        for name, stats, restarts in scheduler.fleet.stats()
    ]
    ops = _samples(figures.ops)
    return {
        # seconds on a clock that only goes forward: rates are differences of two readings over it
        "clock_s": time.monotonic(),
        "training": {
            "queued_ops": press.queued_ops(),
            "models_loaded": press.loaded_models(),
            "ticks": _total(figures.ticks),
            "ops_ok": ops.get(("anvil_press_ops_total", (("outcome", "ok"),)), 0.0),
            "ops_failed": ops.get(("anvil_press_ops_total", (("outcome", "failed"),)), 0.0),
            "rows": _total(figures.rows),
            "tokens": _total(figures.tokens),
            "tick_tokens": _histogram(figures.tick_tokens),
            "tick_adapters": _histogram(figures.tick_adapters),
            "queue_wait_s": _histogram(figures.queue_wait),
            "compute_s": _histogram(figures.compute),
        },
        "sampling": {
            "in_flight": scheduler.in_flight,
            "requests_ok": scheduler.finished,
            "requests_failed": scheduler.failed,
            "tokens_generated": sum(e["tokens_generated"] for e in engines),
            "adapters_resident": sum(e["adapters_resident"] for e in engines),
            "engines": engines,
        },
        "store": asdict(sizes),
    }


def _samples(metric) -> dict[tuple[str, tuple], float]:
    families: list[Metric] = list(metric.collect())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


def _total(counter) -> float:
    return next(value for (name, _), value in _samples(counter).items() if name.endswith("_total"))


def _histogram(histogram) -> dict:
    """Count, sum and mean of the observations so far."""
    samples = _samples(histogram)
    count = next(value for (name, _), value in samples.items() if name.endswith("_count"))
    total = next(value for (name, _), value in samples.items() if name.endswith("_sum"))
    return {"count": count, "sum": total, "mean": total / count if count else None}
