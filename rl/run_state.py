"""Where an RL run stands on disk, so a run killed mid-way resumes from its last checkpoint.

`checkpoints.jsonl` in the run's log folder gets one line per saved training state:
`{"step": k, "state_path": "tinker://…/weights/…"}`, written after the save finished, so the
last line always names a complete checkpoint of the weights after step k.
"""

import json
from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS_FILE = "checkpoints.jsonl"


@dataclass(frozen=True)
class SavedState:
    step: int  # the last training step the state includes
    state_path: str


def record_checkpoint(log_dir: Path, step: int, state_path: str) -> None:
    with open(log_dir / CHECKPOINTS_FILE, "a") as f:
        f.write(json.dumps({"step": step, "state_path": state_path}) + "\n")
        f.flush()


def last_checkpoint(log_dir: Path) -> SavedState | None:
    path = log_dir / CHECKPOINTS_FILE
    if not path.exists():
        return None
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: the one before it counts
            continue
        return SavedState(int(entry["step"]), str(entry["state_path"]))
    return None
