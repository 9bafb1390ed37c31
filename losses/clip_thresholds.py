"""Range rules for the `clip_low_threshold` / `clip_high_threshold` pair of ppo and cispo.

Both losses clip the importance ratio r = exp(lp - q) to [low, high]. We require
0 <= low <= 1 <= high: a token drawn from the current policy has r = 1 and must pass through
unchanged, otherwise the clip would reweight on-policy data instead of bounding off-policy drift.
The rule also implies low <= high.

Each bound is checked on its own, never against the other one. The gateway checks per-token
thresholds by running this check on the smallest and largest value of each per-token input, with the
other bound taken from the config; a rule comparing the two bounds would then judge a per-token low
against the config's high, which is not the high that token uses.
The error names the bare key; the gateway's validation adds where it was found (config or datum).
"""

from collections.abc import Mapping

from losses.types import LossInputError

CLIP_LOW = "clip_low_threshold"
CLIP_HIGH = "clip_high_threshold"


def check_clip_thresholds(config: Mapping[str, float]) -> None:
    low = config[CLIP_LOW]
    high = config[CLIP_HIGH]
    if not 0.0 <= low <= 1.0:
        raise LossInputError(CLIP_LOW, f"must lie in [0, 1] so an on-policy ratio of 1 is kept; got {low}")
    if high < 1.0:
        raise LossInputError(CLIP_HIGH, f"must be >= 1 so an on-policy ratio of 1 is kept; got {high}")
