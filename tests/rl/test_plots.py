"""plot_curves: a valid, non-blank PNG with one panel per metric present, and one that says so
when no metric is."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from rl.metric_keys import (
    ENTROPY,
    EVAL_ACCURACY,
    KL,
    LOSS,
    REWARD,
    STEP_TIME_S,
    TOKENS_PER_S,
)
from rl.plots import plot_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _noisy_records(n_steps: int, keys: list[str]) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"step": s, **{k: float(math.sin(s / 5) + rng.normal(0, 0.2)) for k in keys}} for s in range(n_steps)]


def _pixels(png: Path) -> np.ndarray:
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    return imread(png)


def test_curves_png_is_valid_and_not_blank(tmp_path):
    jsonl = _write(tmp_path / "metrics.jsonl", _noisy_records(30, [REWARD, LOSS, KL]))
    png = plot_curves(jsonl, tmp_path / "curves.png")
    assert png == tmp_path / "curves.png"
    assert _pixels(png).var() > 0


def test_more_metrics_make_more_panels_and_more_steps_a_bigger_file(tmp_path):
    few_keys = plot_curves(_write(tmp_path / "a.jsonl", _noisy_records(30, [LOSS])), tmp_path / "a.png")
    all_keys = [REWARD, LOSS, KL, ENTROPY, TOKENS_PER_S, STEP_TIME_S]
    many_keys = plot_curves(_write(tmp_path / "b.jsonl", _noisy_records(30, all_keys)), tmp_path / "b.png")
    assert _pixels(many_keys).size > 4 * _pixels(few_keys).size

    short = plot_curves(_write(tmp_path / "c.jsonl", _noisy_records(2, [LOSS])), tmp_path / "c.png")
    long = plot_curves(_write(tmp_path / "d.jsonl", _noisy_records(400, [LOSS])), tmp_path / "d.png")
    assert long.stat().st_size > short.stat().st_size


def test_absent_metrics_get_no_panel(tmp_path):
    records = _noisy_records(10, [LOSS])
    only_loss = plot_curves(_write(tmp_path / "a.jsonl", records), tmp_path / "a.png")
    asked_for_more = plot_curves(tmp_path / "a.jsonl", tmp_path / "b.png", keys=[LOSS, REWARD, "missing"])
    assert _pixels(asked_for_more).shape == _pixels(only_loss).shape


def test_sparse_eval_metric_and_null_values_are_plotted(tmp_path):
    records = [{"step": s, LOSS: None if s == 3 else 1.0 / (s + 1)} for s in range(10)]
    for record in records[::5]:
        record[EVAL_ACCURACY] = 0.5
    png = plot_curves(_write(tmp_path / "m.jsonl", records), tmp_path / "m.png")
    assert _pixels(png).var() > 0


@pytest.mark.parametrize("records", [[], [{"step": 0, "something_else": 1.0}]])
def test_no_metric_still_writes_a_png_that_says_so(tmp_path, records):
    png = plot_curves(_write(tmp_path / "metrics.jsonl", records), tmp_path / "curves.png")
    assert _pixels(png).var() > 0  # the message's text
