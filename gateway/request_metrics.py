"""Request counts and latencies by route for `GET /metrics`.

Labelled by the route's template (`/api/v1/training_runs/{run_id}`), never the raw path, so user
ids in paths cannot grow the number of series; requests that match no route count as "unmatched".
A long-polled `retrieve_future` is counted with its wait: its latency is how long clients waited.
"""

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RequestMetrics:
    def __init__(self):
        self.requests = Counter("anvil_http_requests", "HTTP requests answered, by route, method and status class",
                                ["route", "method", "status"], registry=None)
        self.latency = Histogram("anvil_http_request_seconds", "HTTP request latency by route",
                                 ["route", "method"], buckets=SECONDS_BUCKETS, registry=None)

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, f"{status // 100}xx").inc()
        self.latency.labels(route, method).observe(seconds)

    def collect(self):
        yield from self.requests.collect()
        yield from self.latency.collect()


class RequestMetricsMiddleware:
    """Pure ASGI (a streamed response is timed to its last byte)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), 500

        async def send_and_note(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            prefix = scope.get("root_path", "")
            self.metrics.record(prefix + template if template != "unmatched" else template,
                                scope["method"], status, time.monotonic() - started)
