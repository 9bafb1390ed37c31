"""curves.png: one panel per metric of a metrics.jsonl, plotted against the step.

By default the panels are the well-known metrics of rl/metric_keys.py that the file holds (mean
reward, accuracy, eval accuracy, loss, KL, entropy, tokens per second, step time), in that order;
`keys` asks for others (any logged name). A metric the file never logged gets no panel, and a
file with none of them still gives a PNG, one that says so.

It draws on matplotlib's Agg canvas directly, without pyplot: no display needed, and the
process's global matplotlib state (backend, open figures) is left alone.
"""

import math
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rl import metrics_file
from rl.metric_keys import KNOWN_BY_KEY, KNOWN_KEYS, STEP

PANEL_SIZE_IN = (4.5, 2.8)
DPI = 100
# points are marked while a curve is sparse enough for single points (eval steps) to show
MARKERS_UP_TO_POINTS = 40


def plot_curves(metrics_jsonl: Path, out_png: Path, keys: list[str] | None = None) -> Path:
    """Draw the curves of `metrics_jsonl` into `out_png` (written atomically) and return its path."""
    metrics_jsonl, out_png = Path(metrics_jsonl), Path(out_png)
    records = metrics_file.read_records(metrics_jsonl)
    wanted = list(KNOWN_KEYS) if keys is None else list(keys)
    series = {key: _series(records, key) for key in wanted}
    present = [key for key in wanted if series[key][0]]
    run_name = metrics_jsonl.parent.name or str(metrics_jsonl)

    if present:
        fig = _curves_figure(present, series, (records[0][STEP], records[-1][STEP]))
        last_step = records[-1][STEP]
        fig.suptitle(f"{run_name}: {len(records)} steps logged, last step {last_step}")
    else:
        fig = _nothing_to_plot_figure(f"{run_name}: no metrics to plot yet", wanted, len(records))

    out_png.parent.mkdir(parents=True, exist_ok=True)
    staging = out_png.with_name(out_png.name + ".tmp")
    fig.savefig(staging, format="png", dpi=DPI)
    os.replace(staging, out_png)
    return out_png


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records that hold a number for `key` (null is a non-finite value)."""
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            steps.append(record[STEP])
            values.append(float(value))
    return steps, values


def _curves_figure(keys: list[str], series: dict[str, tuple[list[int], list[float]]],
                   step_range: tuple[int, int]) -> Figure:
    columns = 1 if len(keys) == 1 else 2 if len(keys) <= 4 else 3
    rows = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(PANEL_SIZE_IN[0] * columns, PANEL_SIZE_IN[1] * rows + 0.4), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).flatten()
    for ax, key in zip(axes, keys):
        steps, values = series[key]
        known = KNOWN_BY_KEY.get(key)
        ax.plot(steps, values, linewidth=1.3, color="tab:blue",
                marker="o" if len(steps) <= MARKERS_UP_TO_POINTS else None, markersize=3)
        title = key if known is None or known.title == key else f"{known.title} ({key})"
        ax.set_title(title, fontsize=10)
        # every panel spans the whole run, so a sparse metric (eval) lines up with the others
        if step_range[1] > step_range[0]:
            ax.set_xlim(*step_range)
        ax.set_xlabel(STEP, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(keys):]:
        ax.set_visible(False)  # the grid's unused cells stay empty, not as blank axes
    return fig


def _nothing_to_plot_figure(title: str, looked_for: list[str], n_records: int) -> Figure:
    fig = Figure(figsize=(6.0, 2.0), dpi=DPI)
    FigureCanvasAgg(fig)
    logged = "no steps logged" if n_records == 0 else f"{n_records} steps logged, none with"
    message = f"{title}\n{logged} any of:\n" + ", ".join(looked_for)
    fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, wrap=True)
    return fig
