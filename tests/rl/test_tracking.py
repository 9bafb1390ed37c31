"""Tracker: config.json, one metrics.jsonl line per step, resume without duplicates, progress
lines, curves.png, and an offline W&B run inside the log dir that holds the logged values."""

import dataclasses
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from rl.metric_keys import KL, LOSS, REWARD, STEP_TIME_S, TOKENS_PER_S
from rl.tracking import Tracker


@dataclasses.dataclass
class _LoopConfig:
    model: str
    lr: float
    out: Path


def _lines(log_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]


def _log_steps(tracker: Tracker, steps) -> None:
    for step in steps:
        tracker.log(step, {REWARD: step / 10, LOSS: 2.0 - step / 10})


def test_one_line_per_step_and_config(tmp_path):
    config = {"loop": _LoopConfig("anvil/tiny-qwen3", 1e-3, tmp_path / "x"), "seed": 3}
    tracker = Tracker(tmp_path / "run", config, total_steps=5)
    _log_steps(tracker, range(5))
    tracker.close()

    lines = _lines(tmp_path / "run")
    assert [line["step"] for line in lines] == [0, 1, 2, 3, 4]
    assert lines[3] == {"step": 3, REWARD: 0.3, LOSS: 1.7}
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written == {"loop": {"model": "anvil/tiny-qwen3", "lr": 1e-3, "out": str(tmp_path / "x")}, "seed": 3}


def test_lines_are_on_disk_before_close(tmp_path):
    tracker = Tracker(tmp_path, {})
    tracker.log(0, {LOSS: 1.0})
    # what a crash now would leave behind
    assert _lines(tmp_path) == [{"step": 0, LOSS: 1.0}]
    tracker.close()


def test_non_finite_values_are_null_and_numpy_scalars_are_numbers(tmp_path):
    with Tracker(tmp_path, {}) as tracker:
        tracker.log(0, {LOSS: float("nan"), KL: np.float32(0.5), "tokens": np.int64(7)})
    assert _lines(tmp_path) == [{"step": 0, LOSS: None, KL: 0.5, "tokens": 7}]


def test_resume_continues_the_file(tmp_path):
    first = Tracker(tmp_path, {"lr": 1e-3})
    _log_steps(first, range(3))
    first.close()

    second = Tracker(tmp_path, {"lr": 1e-3})
    assert second.last_step() == 2
    _log_steps(second, range(3, 5))
    second.close()
    assert [line["step"] for line in _lines(tmp_path)] == [0, 1, 2, 3, 4]


def test_resume_from_an_older_checkpoint_leaves_no_duplicates(tmp_path):
    crashed = Tracker(tmp_path, {})
    _log_steps(crashed, range(8))  # checkpoint after step 4; crash during step 8
    crashed._file.close()  # no close(): the process died

    resumed = Tracker(tmp_path, {})
    assert resumed.last_step() == 7
    with pytest.raises(ValueError, match="truncate_after"):
        resumed.log(5, {LOSS: 0.0})
    assert resumed.truncate_after(4) == 3
    assert resumed.last_step() == 4
    for step in range(5, 10):
        resumed.log(step, {LOSS: -step})
    resumed.close()

    lines = _lines(tmp_path)
    assert [line["step"] for line in lines] == list(range(10))
    assert [line[LOSS] for line in lines[5:]] == [-5, -6, -7, -8, -9]  # the re-run's values


def test_truncate_after_minus_one_starts_over(tmp_path):
    tracker = Tracker(tmp_path, {})
    _log_steps(tracker, range(3))
    assert tracker.truncate_after(-1) == 3
    assert tracker.last_step() is None
    tracker.log(0, {LOSS: 5.0})
    tracker.close()
    assert _lines(tmp_path) == [{"step": 0, LOSS: 5.0}]


def test_partial_last_line_from_a_crash_is_cut_off(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "lo')
    tracker = Tracker(tmp_path, {})
    assert tracker.last_step() == 0
    tracker.log(1, {LOSS: 0.5})
    tracker.close()
    assert _lines(tmp_path) == [{"step": 0, LOSS: 1.0}, {"step": 1, LOSS: 0.5}]


def test_progress_line_shows_known_metrics_compactly(tmp_path, capsys):
    with Tracker(tmp_path, {}, total_steps=50) as tracker:
        tracker.log(12, {REWARD: 0.42, LOSS: 1.2341, KL: 0.01, TOKENS_PER_S: 812.4,
                         STEP_TIME_S: 2.31, "other": 7.0})
        tracker.log(13, {LOSS: 52345.6, KL: float("nan")})  # no step time: the measured one
    lines = capsys.readouterr().out.splitlines()
    assert "step 12/50  reward 0.420  loss 1.234  kl 0.0100  tok/s 812  2.3 s" in lines
    assert re.fullmatch(r"step 13/50  loss 52346  kl nan  \d+\.\d s", lines[-1])


def test_metrics_may_not_hold_step_or_text(tmp_path):
    with Tracker(tmp_path, {}) as tracker:
        with pytest.raises(ValueError, match="step"):
            tracker.log(0, {"step": 1.0})
        with pytest.raises(TypeError, match="numbers only"):
            tracker.log(0, {LOSS: "low"})
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_close_draws_the_curves(tmp_path):
    with Tracker(tmp_path, {}) as tracker:
        _log_steps(tracker, range(20))
    png = tracker.close()  # idempotent: the context manager closed it already
    assert png == tmp_path / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B in offline mode, with its settings and caches kept out of the home directory."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


# W&B's service writes an offline run's transaction log when it closes the run's stream, which
# happens shortly after finish() returns (and at the latest when the process exits)
WANDB_LOG_COMPLETE_TIMEOUT_S = 30.0


def _wandb_records(run_folder: Path) -> list:
    """The records of an offline run's transaction log (`run-<id>.wandb`, what `wandb sync`
    uploads), once it is complete. The format is LevelDB's log: after a 7-byte file header,
    32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type); each record is a
    protobuf `Record`, and the last one the run's `exit`."""
    (log,) = run_folder.glob("run-*.wandb")
    deadline = time.monotonic() + WANDB_LOG_COMPLETE_TIMEOUT_S
    while True:
        records = _parse_wandb_log(log.read_bytes())
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, f"{log} got no exit record in {WANDB_LOG_COMPLETE_TIMEOUT_S} s"
        time.sleep(0.05)


def _parse_wandb_log(data: bytes) -> list:
    from wandb.proto import wandb_internal_pb2

    assert data[:4] == b":W&B"
    block, chunk_header = 32 * 1024, 7
    pos, pending, records = 7, b"", []
    while pos + chunk_header <= len(data):
        if block - pos % block < chunk_header:  # a block's tail too short for a chunk is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + chunk_header])
        if pos + chunk_header + length > len(data):
            break  # a chunk still being written
        pending += data[pos + chunk_header:pos + chunk_header + length]
        pos += chunk_header + length
        if kind in (1, 4):  # a FULL chunk, or the LAST of a FIRST, MIDDLE..., LAST series
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _wandb_history(run_folder: Path) -> list[dict]:
    """The rows the run logged: {"_step": ..., metric: value}, W&B's own _timestamp etc. left out."""
    rows = []
    for record in _wandb_records(run_folder):
        if record.WhichOneof("record_type") == "history":
            row = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            rows.append({k: v for k, v in row.items() if k == "_step" or not k.startswith("_")})
    return rows


def _wandb_run_record(run_folder: Path):
    """The run's `RunRecord`: its id, project, name and config."""
    return next(r.run for r in _wandb_records(run_folder) if r.WhichOneof("record_type") == "run")


def test_offline_wandb_run_is_inside_the_log_dir_and_holds_the_metrics(tmp_path, offline_wandb):
    log_dir = tmp_path / "run"
    tracker = Tracker(log_dir, {"lr": 1e-3, "out": tmp_path}, wandb_project="anvil-tests", wandb_run_name="t")
    _log_steps(tracker, range(4))
    tracker.close()

    run_folder = tracker.wandb_dir
    assert run_folder is not None and run_folder.is_dir()
    assert log_dir in run_folder.parents
    assert run_folder.name.startswith("offline-run-")
    assert _wandb_history(run_folder) == [
        {"_step": s, REWARD: pytest.approx(s / 10), LOSS: pytest.approx(2.0 - s / 10)} for s in range(4)
    ]
    run = _wandb_run_record(run_folder)
    assert run.run_id == json.loads((log_dir / "wandb_run.json").read_text())["id"]
    assert (run.project, run.display_name) == ("anvil-tests", "t")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["lr"] == 1e-3 and config["out"] == str(tmp_path)


def test_wandb_resumes_the_same_run_and_skips_the_steps_it_has(tmp_path, offline_wandb):
    first = Tracker(tmp_path, {}, wandb_project="anvil-tests")
    _log_steps(first, range(6))
    first.close()
    # resumed from a checkpoint after step 2: steps 3..5 run again, then 6 and 7 are new
    second = Tracker(tmp_path, {}, wandb_project="anvil-tests")
    second.truncate_after(2)
    _log_steps(second, range(3, 8))
    second.close()

    assert first.wandb_dir != second.wandb_dir
    run_id = json.loads((tmp_path / "wandb_run.json").read_text())["id"]
    assert _wandb_run_record(first.wandb_dir).run_id == run_id == _wandb_run_record(second.wandb_dir).run_id
    # W&B keeps the first values of steps 3..5; metrics.jsonl holds the re-run's
    assert [row["_step"] for row in _wandb_history(second.wandb_dir)] == [6, 7]
    assert [line["step"] for line in _lines(tmp_path)] == list(range(8))


_SCRIPT_WITH_A_WANDB_RUN = """
import sys
from pathlib import Path

import psutil

from rl.tracking import Tracker

tracker = Tracker(Path(sys.argv[1]), {}, wandb_project="anvil-tests")
tracker.log(0, {"loss": 1.0})
print("wandb pids", *[p.pid for p in psutil.Process().children(recursive=True)])
tracker.close()
"""


def test_no_wandb_process_outlives_the_process(tmp_path, offline_wandb):
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    # W&B points child processes at its running service through WANDB_SERVICE; the script must
    # start a service of its own, as a training script run from a shell does
    env.pop("WANDB_SERVICE", None)
    done = subprocess.run([sys.executable, "-c", _SCRIPT_WITH_A_WANDB_RUN, str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    (pids_line,) = [line for line in done.stdout.splitlines() if line.startswith("wandb pids")]
    pids = [int(pid) for pid in pids_line.split()[2:]]
    assert pids, "W&B started no service process: nothing to check"
    _, alive = psutil.wait_procs([p for p in map(_process_or_none, pids) if p is not None], timeout=10)
    assert not alive, f"W&B processes still running after their parent exited: {alive}"
    assert _wandb_history(next((tmp_path / "run" / "wandb").glob("offline-run-*"))) == [{"_step": 0, LOSS: 1.0}]


def _process_or_none(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
