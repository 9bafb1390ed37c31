"""The press's running figures for `GET /metrics`, fed one `TickStats` per tick.

A tick's figures are recorded when it ends, so a client that already has its result may scrape a
moment before its tick is counted.
"""

from prometheus_client import Counter, Histogram

from gateway.tick_stats import TickStats

# tokens and adapters per tick grow with load and with the number of clients training at once
TOKEN_BUCKETS = (64, 256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576)
ADAPTER_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# a ready op waits for the tick in progress; a tick takes milliseconds on a tiny model, minutes on a
# large batch
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class PressMetrics:
    def __init__(self):
        # registry=None: each server keeps its own figures (tests start several in one process)
        self.ticks = Counter("anvil_press_ticks", "press ticks that ran work", registry=None)
        self.ops = Counter("anvil_press_ops", "training operations finished, by outcome", ["outcome"], registry=None)
        for outcome in ("ok", "failed"):
            self.ops.labels(outcome)  # both series exist from the start, at 0
        self.rows = Counter("anvil_train_rows", "datums run by forward/forward_backward", registry=None)
        self.tokens = Counter("anvil_train_tokens", "model-input tokens run by forward/forward_backward", registry=None)
        self.tick_tokens = Histogram(
            "anvil_press_tick_tokens", "model-input tokens per tick that ran forward/forward_backward work",
            buckets=TOKEN_BUCKETS, registry=None,
        )
        self.tick_adapters = Histogram(
            "anvil_press_tick_adapters", "distinct adapters per tick that ran forward/forward_backward work",
            buckets=ADAPTER_BUCKETS, registry=None,
        )
        self.queue_wait = Histogram(
            "anvil_press_queue_wait_seconds", "per operation, from submission until the press took it",
            buckets=SECONDS_BUCKETS, registry=None,
        )
        self.compute = Histogram(
            "anvil_press_compute_seconds", "per tick, time inside the trainer pool", buckets=SECONDS_BUCKETS, registry=None
        )

    def record(self, stats: TickStats) -> None:
        self.ticks.inc()
        self.ops.labels("ok").inc(stats.ops - stats.failed)
        self.ops.labels("failed").inc(stats.failed)
        self.rows.inc(stats.rows)
        self.tokens.inc(stats.tokens)
        if stats.batches:
            self.tick_tokens.observe(stats.tokens)
            self.tick_adapters.observe(stats.adapters)
        for wait in stats.queue_wait_s:
            self.queue_wait.observe(wait)
        self.compute.observe(stats.compute_s)

    def collect(self):
        for metric in (self.ticks, self.ops, self.rows, self.tokens, self.tick_tokens, self.tick_adapters,
                       self.queue_wait, self.compute):
            yield from metric.collect()
