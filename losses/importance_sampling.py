"""Importance sampling: loss = -Σ_t r_t·A_t with r_t = exp(lp_t - q_t).

Source: the Tinker loss docs (`importance_sampling`). The ratio corrects for the tokens having been
sampled by the sampler's policy q rather than the trainer's; its gradient is -r_t·A_t per token, so
positions with A_t = 0 contribute nothing. A plain sum over every token of the request: no mean, no
length normalisation. No config.
"""

from collections.abc import Mapping

import torch

from losses.diagnostics import drift_metrics, trained_token_mask
from losses.types import LossResult, LossSpec


def importance_sampling(
    lp_T: torch.Tensor, inputs: Mapping[str, torch.Tensor], config: Mapping[str, float]
) -> LossResult:
    sampler_lp_T = inputs["logprobs"]
    advantages_T = inputs["advantages"]
    log_ratio_T = lp_T.float() - sampler_lp_T
    ratio_T = torch.exp(log_ratio_T)
    loss = -(ratio_T * advantages_T).sum()
    return LossResult(loss=loss, metrics=drift_metrics(log_ratio_T, trained_token_mask(advantages_T)))


SPEC = LossSpec(
    name="importance_sampling",
    compute=importance_sampling,
    required_inputs=("logprobs", "advantages"),
)
