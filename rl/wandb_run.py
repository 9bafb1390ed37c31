"""The W&B side of a Tracker: start or resume the run that belongs to a log dir, log, finish.

The run id lives in `log_dir/wandb_run.json`, so a job restarted on the same log dir resumes the
same W&B run (`id=..., resume="allow"`), and the run's files go under the log dir (`dir=log_dir`;
with `WANDB_MODE=offline`, the `wandb/offline-run-*` folder that `wandb sync` uploads).

W&B keeps the first value it was sent for a step: it drops (with a warning) any step at or below
the highest it has. When a loop resumes from a checkpoint older than its last logged step, the
steps it runs again therefore go to metrics.jsonl only, and to W&B again once they pass that
highest step, which the same file remembers (`max_step`).

W&B prints banners, links and hints by default; a run here is silent, and the Tracker prints the
one line worth having (where the run is). W&B runs a service process (wandb-core) beside the
Python process, shared by its runs, which ends when the Python process does; `finish()` ends the
run, and the service writes the run's files out as it closes the run's stream, just after.
"""

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "wandb_run.json"


class WandbRun:
    """One W&B run, started by `start_wandb_run`."""

    def __init__(self, run: Any, state_path: Path, max_step: int | None):
        self._run = run
        self._state_path = state_path
        self._max_step = max_step  # the highest step W&B holds for this run
        # where the run lives, for the Tracker to report (an offline run has no URL)
        self.folder = Path(run.settings.sync_dir)
        self.url: str | None = None if run.offline else run.settings.run_url

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if self._max_step is not None and step <= self._max_step:
            return  # W&B would drop it anyway (see the module docstring)
        self._run.log(metrics, step=step)
        self._max_step = step

    def remember_max_step(self, step: int | None) -> None:
        """Record in the state file that W&B may hold steps up to `step`, before metrics.jsonl
        forgets them (it is written here, not at every step, since truncating is rare)."""
        if step is not None and (self._max_step is None or step > self._max_step):
            self._max_step = step
        _write_state(self._state_path, self._run.id, self._max_step)

    def finish(self, exit_code: int = 0) -> None:
        _write_state(self._state_path, self._run.id, self._max_step)
        self._run.finish(exit_code=exit_code)


def start_wandb_run(log_dir: Path, project: str, run_name: str | None, config: dict) -> WandbRun:
    """Start the log dir's W&B run, or resume it when the log dir has one."""
    import wandb  # slow to import (about a second), and only needed when a project is set

    state_path = Path(log_dir) / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    run = wandb.init(
        project=project,
        name=run_name,
        id=state.get("id"),
        resume="allow",
        dir=str(log_dir),
        config=config,
        # several Trackers in one process (a sweep, tests) each get their own run
        reinit="create_new",
        settings=wandb.Settings(silent=True),
    )
    _write_state(state_path, run.id, state.get("max_step"))
    return WandbRun(run, state_path, state.get("max_step"))


def _write_state(path: Path, run_id: str, max_step: int | None) -> None:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps({"id": run_id, "max_step": max_step}) + "\n")
    os.replace(staging, path)
