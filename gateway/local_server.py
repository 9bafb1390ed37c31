"""Start `anvil serve` as a child process on a free port: for tests, demos and notebooks."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from anvil.tiny_qwen3 import ensure_tiny_qwen3

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AnvilServer:
    def __init__(self, data_dir: Path, extra_models: dict[str, Path] | None = None, args: list[str] = ()):
        """`args`: further `anvil serve` flags, e.g. ["--sampler-engine", "torch"]."""
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        command = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port), "--data-dir", str(data_dir)]
        for name, path in (extra_models or {}).items():
            command += ["--model", f"{name}={path}"]
        command += list(args)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # a server that never answered is not left running
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"anvil serve exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/api/v1/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"anvil serve did not start in {STARTUP_TIMEOUT_S} s:\n{self.log_path.read_text()}")

    def __enter__(self) -> "AnvilServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def tiny_model_folder(data_dir: Path) -> Path:
    """The built-in model's folder, built into the server's cache exactly as the server would."""
    return ensure_tiny_qwen3(data_dir / "models")
