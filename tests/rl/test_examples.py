"""Every example runs against a real server, as its docstring says, and leaves what it promises
(short settings: behaviour, not learning; the demo has its own test)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sdk_helpers import API_KEY

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(anvil_server, name: str, *args: str) -> str:
    env = {**os.environ, "TINKER_API_KEY": API_KEY, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--base-url", anvil_server.base_url, *args],
        capture_output=True, text=True, env=env, timeout=400,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_minimal_sl_loop(anvil_server):
    out = _run(anvil_server, "sl_loop", "--steps", "3")
    losses = [float(x) for x in re.findall(r"loss:sum\s+([\d.]+)", out)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert re.search(r"saved:\s+tinker://", out)


def test_minimal_rl_loop(anvil_server):
    out = _run(anvil_server, "rl_loop", "--steps", "2", "--group-size", "4")
    assert len(re.findall(r"mean reward", out)) == 2


def test_sft_on_a_chat_file(anvil_server, tmp_path):
    out = _run(anvil_server, "sft_chat", "--epochs", "1", "--log-dir", str(tmp_path))
    steps = int(re.search(r"renderer \S+, (\d+) steps", out).group(1))
    rows = _lines(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in rows] == list(range(steps))
    assert all(row["loss"] > 0 for row in rows)
    assert (tmp_path / "curves.png").stat().st_size > 0
    path = re.search(r"sampler checkpoint: (tinker://\S+)", out).group(1)
    # the checkpoint it saved samples
    out = _run(anvil_server, "sample_checkpoint", "--model-path", path, "-n", "2", "--max-tokens", "4")
    assert "[1]" in out and "compute_logprobs" in out


def test_multi_turn_rl_on_guess_the_number(anvil_server, tmp_path):
    out = _run(anvil_server, "rl_guess_number", "--steps", "2", "--log-dir", str(tmp_path))
    assert [row["step"] for row in _lines(tmp_path / "metrics.jsonl")] == [0, 1]
    assert "curves:" in out


def test_dpo_through_forward_backward_custom(anvil_server, tmp_path):
    out = _run(anvil_server, "dpo", "--steps", "2", "--log-dir", str(tmp_path))
    assert len(_lines(tmp_path / "metrics.jsonl")) == 2
    assert re.search(r"sampler checkpoint: tinker://", out)
