"""Load test: N SDK clients training and sampling for a fixed time on one loopback server.

Each client (its own key, so its own user) loops: forward_backward (1 × `--tokens`) and optim_step
submitted together; every 4th step, save_weights_and_get_sampling_client and a sample of 2 × 8
tokens. Beside them a probe sends a raw session heartbeat every 0.5 s. Reported: requests sent and
answered (a request lost or failed is counted and printed), p50/p99 latency of steps, samples and
heartbeats, and the server's RSS before and after.

    python -m bench.load_test [--clients 32] [--duration-s 300] [--sampler-engine auto]

Nothing in it names a device: the same command measures a CUDA machine.
"""

import argparse
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import tinker
from tinker import types

from bench.data import random_datum
from gateway.local_server import AnvilServer

MODEL = "anvil/tiny-qwen3"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {"step": [], "sample": [], "heartbeat": []}
        self.sent = self.answered = 0
        self.errors: list[str] = []

    def record(self, kind: str, seconds: float, requests: int) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.sent += requests
            self.answered += requests

    def failed(self, kind: str, exc: Exception, requests: int) -> None:
        with self.lock:
            self.sent += requests
            self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")


def _client(base_url: str, index: int, stop_at: float, tally: Tally, tokens: int) -> None:
    rng = np.random.default_rng(index)
    service = tinker.ServiceClient(base_url=base_url, api_key=f"tml-load-{index}")
    trainer = service.create_lora_training_client(base_model=MODEL, rank=8, seed=index).result()
    step = 0
    while time.monotonic() < stop_at:
        datum = random_datum(rng, tokens)
        started = time.monotonic()
        try:
            forward_backward = trainer.forward_backward([datum], "cross_entropy")
            optim = trainer.optim_step(types.AdamParams(learning_rate=1e-4))
            forward_backward.result()
            optim.result()
            tally.record("step", time.monotonic() - started, 2)
        except Exception as exc:  # deliberate: a load test counts failures rather than stopping
            tally.failed("step", exc, 2)
        step += 1
        if step % 4 == 0:
            started = time.monotonic()
            try:
                sampler = trainer.save_weights_and_get_sampling_client().result()
                sampler.sample(types.ModelInput.from_ints(datum.model_input.to_ints()[:8]), num_samples=2,
                               sampling_params=types.SamplingParams(max_tokens=8)).result()
                tally.record("sample", time.monotonic() - started, 2)
            except Exception as exc:  # deliberate, as above
                tally.failed("sample", exc, 2)
    service.close("success").result()


def _heartbeats(base_url: str, stop_at: float, tally: Tally) -> None:
    headers = {"X-API-Key": "tml-load-probe"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        session_id = http.post("/api/v1/create_session", json={"tags": []}).json()["session_id"]
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                http.post("/api/v1/session_heartbeat", json={"session_id": session_id}).raise_for_status()
                tally.record("heartbeat", time.monotonic() - started, 1)
            except Exception as exc:  # deliberate, as above
                tally.failed("heartbeat", exc, 1)
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration-s", type=float, default=300.0)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--sampler-engine", default="auto", choices=["auto", "torch", "vllm"])
    args = parser.parse_args()
    tally = Tally()
    with tempfile.TemporaryDirectory() as data_dir, AnvilServer(Path(data_dir), args=["--sampler-engine", args.sampler_engine]) as server:
        rss_before = _rss_mb(server.process.pid)
        stop_at = time.monotonic() + args.duration_s
        threads = [threading.Thread(target=_client, args=(server.base_url, i, stop_at, tally, args.tokens))
                   for i in range(args.clients)]
        threads.append(threading.Thread(target=_heartbeats, args=(server.base_url, stop_at, tally)))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        rss_after = _rss_mb(server.process.pid)

    print(f"{args.clients} clients for {elapsed:.0f} s ({args.sampler_engine} engine): "
          f"{tally.sent} requests sent, {tally.answered} answered, {len(tally.errors)} failed or lost")
    for kind, values in tally.latencies.items():
        if values:
            p50, p99 = np.percentile(values, [50, 99])
            print(f"  {kind:<9} n={len(values):5d}  p50 {p50 * 1000:7.0f} ms  p99 {p99 * 1000:7.0f} ms")
    print(f"  server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after")
    for error in tally.errors[:10]:
        print("  error:", error)


if __name__ == "__main__":
    main()
