"""Experiment tracking for one training run: config.json, metrics.jsonl, W&B, a progress line.

    tracker = Tracker(Path("runs/arith"), config, wandb_project="anvil-rl", total_steps=50)
    start = 0 if checkpoint_step is None else checkpoint_step + 1
    tracker.truncate_after(start - 1)     # resuming: forget the steps about to run again
    for step in range(start, 50):
        ...
        tracker.log(step, {REWARD: 0.42, LOSS: 1.23, STEP_TIME_S: 2.3})
    png = tracker.close()   # runs/arith/curves.png

What lands in the log dir:
    config.json        the run's config, as JSON (Paths, dataclasses and enums converted)
    metrics.jsonl      one line per logged step: {"step": 12, "reward/mean": 0.42, ...}
    curves.png         the known metrics' curves (rl/plots.py), drawn by close()
    wandb_run.json     the W&B run id, so a restart resumes the same run (rl/wandb_run.py)
    wandb/             the W&B run folders, when a project is set

Resuming: a Tracker opened on a log dir that already has a metrics.jsonl appends to it. Steps
must strictly increase down the file, and `log` refuses a step at or below `last_step()`: a loop
that resumes from a checkpoint at step k calls `truncate_after(k)` first, which drops the lines of
the steps it is about to run again (their values belonged to weights the checkpoint no longer
has). That keeps exactly one line per step, and the file describes the weights that exist.
"""

import dataclasses
import enum
import json
import os
import time
from pathlib import Path
from typing import Any, Self, TextIO

from rl import metrics_file
from rl.metric_keys import KNOWN_BY_KEY, KNOWN_METRICS, STEP, STEP_TIME_S
from rl.plots import plot_curves
from rl.wandb_run import WandbRun, start_wandb_run

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"


class Tracker:
    """Tracks one run in `log_dir`: see the module docstring for the files and the resume rule."""

    def __init__(
        self,
        log_dir: Path,
        config: dict,
        wandb_project: str | None = None,
        wandb_run_name: str | None = None,
        total_steps: int | None = None,
    ):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.log_dir / METRICS_FILE
        self.total_steps = total_steps
        config_json = _jsonable_config(config)
        _write_atomically(self.log_dir / CONFIG_FILE, json.dumps(config_json, indent=2) + "\n")

        records = metrics_file.repair(self.metrics_path) if self.metrics_path.exists() else []
        self._last_step: int | None = records[-1][STEP] if records else None

        self._wandb: WandbRun | None = None
        self._wandb_folder: Path | None = None
        if wandb_project is not None:
            self._wandb = start_wandb_run(self.log_dir, wandb_project, wandb_run_name, config_json)
            self._wandb_folder = self._wandb.folder
            print(f"wandb: {self._wandb.url or f'offline run in {self._wandb.folder}'}", flush=True)

        self._file: TextIO | None = open(self.metrics_path, "a", encoding="utf-8")
        self._closed_png: Path | None = None
        self._last_log_time = time.monotonic()
        if self._last_step is not None:
            print(f"resuming {self.metrics_path} after step {self._last_step}", flush=True)

    @property
    def wandb_dir(self) -> Path | None:
        """The W&B run's folder (what `wandb sync` takes), or None without W&B."""
        return self._wandb_folder

    def last_step(self) -> int | None:
        """The last step in metrics.jsonl, or None if it has none."""
        return self._last_step

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append the step's line to metrics.jsonl (flushed), send it to W&B, print progress."""
        if self._file is None:
            raise RuntimeError("log() after close()")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(
                f"step {step} is not after the last logged step {self._last_step}; a loop that "
                f"resumes from a checkpoint at step k calls truncate_after(k) before logging again"
            )
        record = metrics_file.make_record(step, metrics)
        self._file.write(metrics_file.encode_line(record))
        self._file.flush()  # a crash right after this step loses nothing
        self._last_step = step
        if self._wandb is not None:
            self._wandb.log(step, {k: v for k, v in record.items() if k != STEP})
        now = time.monotonic()
        print(self._progress_line(step, metrics, now - self._last_log_time), flush=True)
        self._last_log_time = now

    def truncate_after(self, step: int) -> int:
        """Drop the lines of the steps after `step`, and return how many it dropped. A loop that
        resumes from the checkpoint taken after step k calls truncate_after(k); one that starts
        over, truncate_after(-1)."""
        if self._file is None:
            raise RuntimeError("truncate_after() after close()")
        records = metrics_file.read_records(self.metrics_path)
        kept = [r for r in records if r[STEP] <= step]
        if len(kept) == len(records):
            return 0
        if self._wandb is not None:
            self._wandb.remember_max_step(self._last_step)
        self._file.close()
        metrics_file.rewrite(self.metrics_path, kept)
        self._file = open(self.metrics_path, "a", encoding="utf-8")
        self._last_step = kept[-1][STEP] if kept else None
        return len(records) - len(kept)

    def close(self, exit_code: int = 0) -> Path:
        """Draw log_dir/curves.png, finish the W&B run, and return the PNG's path. Idempotent."""
        if self._closed_png is not None:
            return self._closed_png
        try:
            if self._file is not None:
                self._file.close()
                self._file = None
            png = plot_curves(self.metrics_path, self.log_dir / CURVES_FILE)
        finally:
            # the W&B run ends even when plotting fails: W&B would mark it crashed only at exit
            if self._wandb is not None:
                wandb_run, self._wandb = self._wandb, None
                wandb_run.finish(exit_code)
        self._closed_png = png
        return png

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exit_code=0 if exc_type is None else 1)

    def _progress_line(self, step: int, metrics: dict[str, float], since_last_s: float) -> str:
        if self.total_steps is not None:
            parts = [f"step {step:>{len(str(self.total_steps))}}/{self.total_steps}"]
        else:
            parts = [f"step {step:>4}"]
        for known in KNOWN_METRICS:
            if known.key in metrics and known.key != STEP_TIME_S:  # the time ends the line
                parts.append(f"{known.short_name} {_shown(metrics[known.key], known.format_value)}")
        seconds = metrics.get(STEP_TIME_S, since_last_s)
        parts.append(f"{_shown(seconds, KNOWN_BY_KEY[STEP_TIME_S].format_value)} s")
        return "  ".join(parts)


def _shown(value: Any, format_value) -> str:
    try:
        return format_value(float(value))
    except (TypeError, ValueError):
        return str(value)


def _jsonable_config(config: Any) -> Any:
    """`config` as plain JSON types; raises TypeError naming what it cannot convert."""
    return json.loads(json.dumps(config, default=_to_json))


def _to_json(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if hasattr(obj, "model_dump"):  # pydantic models, such as the tinker SDK's types
        return obj.model_dump(mode="json")
    if hasattr(obj, "item"):  # numpy scalars, 0-d arrays and tensors
        return obj.item()
    raise TypeError(f"config value {obj!r} ({type(obj).__name__}) cannot be written as JSON")


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
