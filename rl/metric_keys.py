"""The metric names rl/ loops and examples log, and how the progress line and curves.png show them.

A loop may log any keys it likes (`Tracker.log(step, {...})`); these well-known ones get a place
in the per-step progress line and a panel in curves.png whenever a run logs them:

    reward/mean     mean reward of the step's sampled completions
    accuracy        fraction of the step's completions (or targets) that were right
    eval/accuracy   accuracy on held-out prompts, logged on evaluation steps only
    loss            the step's training loss (a sum over tokens, as anvil's losses are)
    kl              estimated KL divergence between the sampling and the training policy
    entropy         mean per-token entropy of the sampled tokens
    tokens_per_s    tokens processed per second of the step's wall time
    step_time_s     wall time of the step, in seconds

Every line of metrics.jsonl also holds `step`, the x axis of every curve.
"""

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


@dataclass(frozen=True)
class KnownMetric:
    key: str
    short_name: str  # its label in the progress line
    title: str  # its panel's title in curves.png
    value_format: str  # format spec of its value in the progress line


# in the order the progress line shows them and curves.png draws them: what the run is after
# first (reward, accuracy), then how training behaves, then speed
KNOWN_METRICS: tuple[KnownMetric, ...] = (
    KnownMetric(REWARD, "reward", "mean reward", ".3f"),
    KnownMetric(ACCURACY, "acc", "accuracy", ".3f"),
    KnownMetric(EVAL_ACCURACY, "eval acc", "eval accuracy", ".3f"),
    KnownMetric(LOSS, "loss", "loss", ".4g"),
    KnownMetric(KL, "kl", "KL divergence", ".3g"),
    KnownMetric(ENTROPY, "entropy", "entropy per token", ".3f"),
    KnownMetric(TOKENS_PER_S, "tok/s", "tokens per second", ".0f"),
    KnownMetric(STEP_TIME_S, "time", "step time in seconds", ".1f"),
)
KNOWN_KEYS: tuple[str, ...] = tuple(m.key for m in KNOWN_METRICS)
KNOWN_BY_KEY: dict[str, KnownMetric] = {m.key: m for m in KNOWN_METRICS}
