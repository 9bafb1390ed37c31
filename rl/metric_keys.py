"""The metric names rl/ loops and examples log, and how the progress line and curves.png show them.

A loop may log any keys it likes (`Tracker.log(step, {...})`); these well-known ones get a place
in the per-step progress line and a panel in curves.png whenever a run logs them:

    reward/mean     mean reward of the step's sampled completions
    accuracy        fraction of the step's completions (or targets) that were right
    eval/accuracy   accuracy on held-out prompts, logged on evaluation steps only
    loss            the step's training loss (a sum over tokens, as anvil's losses are)
    kl              estimated KL divergence from the policy to a reference model (rl/kl.py)
    entropy         mean per-token entropy of the sampled tokens (estimated as −mean logprob)
    tokens_per_s    tokens processed per second of the step's wall time
    step_time_s     wall time of the step, in seconds

Every line of metrics.jsonl also holds `step`, the x axis of every curve.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

STEP = "step"
REWARD = "reward/mean"
ACCURACY = "accuracy"
EVAL_ACCURACY = "eval/accuracy"
LOSS = "loss"
KL = "kl"
ENTROPY = "entropy"
TOKENS_PER_S = "tokens_per_s"
STEP_TIME_S = "step_time_s"


def fixed(decimals: int) -> Callable[[float], str]:
    """Formats a value with `decimals` decimals: for values with a known scale (rewards in [0, 1])."""
    return lambda value: f"{value:.{decimals}f}"


def significant(digits: int) -> Callable[[float], str]:
    """Formats a value to `digits` significant digits, trailing zeros kept so that the columns of
    successive lines line up (2.000, 0.01230, 523.4); whole numbers from 10**digits up."""
    def format_value(value: float) -> str:
        if math.isfinite(value) and abs(value) >= 10**digits:
            return f"{value:.0f}"
        return f"{value:#.{digits}g}".rstrip(".")
    return format_value


@dataclass(frozen=True)
class KnownMetric:
    key: str
    short_name: str  # its label in the progress line
    title: str  # its panel's title in curves.png
    format_value: Callable[[float], str]  # its value in the progress line


# in the order the progress line shows them and curves.png draws them: what the run is after
# first (reward, accuracy), then how training behaves, then speed
KNOWN_METRICS: tuple[KnownMetric, ...] = (
    KnownMetric(REWARD, "reward", "mean reward", fixed(3)),
    KnownMetric(ACCURACY, "acc", "accuracy", fixed(3)),
    KnownMetric(EVAL_ACCURACY, "eval acc", "eval accuracy", fixed(3)),
    KnownMetric(LOSS, "loss", "loss", significant(4)),
    KnownMetric(KL, "kl", "KL divergence", significant(3)),
    KnownMetric(ENTROPY, "entropy", "entropy per token", fixed(3)),
    KnownMetric(TOKENS_PER_S, "tok/s", "tokens per second", fixed(0)),
    KnownMetric(STEP_TIME_S, "time", "step time in seconds", fixed(1)),
)
KNOWN_KEYS: tuple[str, ...] = tuple(m.key for m in KNOWN_METRICS)
KNOWN_BY_KEY: dict[str, KnownMetric] = {m.key: m for m in KNOWN_METRICS}
