"""Memory stays bounded however many clients come and go: 200 clients that each create a model,
train a step and close leave the server's RSS within 100 MB of where it was after the first 20."""

import time
from pathlib import Path

import pytest
import tinker
from tinker import types

from sdk_helpers import TINY, sft_datum

pytestmark = pytest.mark.slow

CYCLES, WARM_UP = 200, 20
BOUND_MB = 100


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_200_create_train_close_cycles_leave_memory_bounded(tmp_path):
    from gateway.local_server import AnvilServer

    with AnvilServer(tmp_path / "data", args=["--sampler-engine", "torch"]) as server:
        pid = server.process.pid
        datum = sft_datum(list(range(1, 65)))
        rss, started = {}, time.monotonic()
        for cycle in range(1, CYCLES + 1):
            service = tinker.ServiceClient(base_url=server.base_url, api_key=f"tml-memory-{cycle % 7}")
            # a different rank each time, so no cycle reuses another's buffers by luck of shape
            training = service.create_lora_training_client(base_model=TINY, rank=4 + cycle % 5).result()
            forward_backward = training.forward_backward([datum], "cross_entropy")
            optim_step = training.optim_step(types.AdamParams(learning_rate=1e-3))
            forward_backward.result()
            optim_step.result()
            service.close("success").result()
            if cycle in (WARM_UP, CYCLES):
                time.sleep(1.0)  # the press unloads the last model before its next tick
                rss[cycle] = _rss_mb(pid)
        grown = rss[CYCLES] - rss[WARM_UP]
        print(f"RSS after {WARM_UP} cycles {rss[WARM_UP]:.0f} MB, after {CYCLES} {rss[CYCLES]:.0f} MB "
              f"(+{grown:.0f} MB), {time.monotonic() - started:.0f} s")
        assert grown < BOUND_MB, rss
