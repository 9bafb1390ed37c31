"""PPO clipped objective: loss = -Σ_t min(r_t·A_t, clip(r_t, low, high)·A_t), r_t = exp(lp_t - q_t).

Source: Schulman et al. 2017, "Proximal Policy Optimization Algorithms", eq. 7, with the clip range
[1-ε, 1+ε] written as [clip_low_threshold, clip_high_threshold] as in the Tinker loss docs
(defaults 0.8 and 1.2). The min takes the pessimistic term, so a token whose ratio has already moved
past the bound in the direction its advantage pushes (A > 0 and r > high, or A < 0 and r < low) gets
no gradient; everywhere else the gradient is -r_t·A_t, which is 0 where A_t = 0.

The thresholds may arrive per token; the trainer always hands them to us as [T] tensors in `inputs`.
"""

from collections.abc import Mapping

import torch

from losses.clip_thresholds import CLIP_HIGH, CLIP_LOW, check_clip_thresholds
from losses.diagnostics import drift_metrics, trained_token_mask, trained_token_mean
from losses.types import LossResult, LossSpec


def ppo(lp_T: torch.Tensor, inputs: Mapping[str, torch.Tensor], config: Mapping[str, float]) -> LossResult:
    sampler_lp_T = inputs["logprobs"]
    advantages_T = inputs["advantages"]
    low_T = inputs[CLIP_LOW]
    high_T = inputs[CLIP_HIGH]

    log_ratio_T = lp_T.float() - sampler_lp_T
    ratio_T = torch.exp(log_ratio_T)
    unclipped_T = ratio_T * advantages_T
    clipped_T = torch.clamp(ratio_T, min=low_T, max=high_T) * advantages_T
    loss = -torch.minimum(unclipped_T, clipped_T).sum()

    trained_T = trained_token_mask(advantages_T)
    with torch.no_grad():
        # clipping is active where the clipped term wins the min and zeroes the token's gradient
        clip_active_T = ((advantages_T > 0) & (ratio_T > high_T)) | ((advantages_T < 0) & (ratio_T < low_T))
        metrics = {
            **drift_metrics(log_ratio_T, trained_T),
            "clip_fraction:mean": trained_token_mean(clip_active_T, trained_T, empty_value=0.0),
        }
    return LossResult(loss=loss, metrics=metrics)


SPEC = LossSpec(
    name="ppo",
    compute=ppo,
    required_inputs=("logprobs", "advantages"),
    config_defaults={CLIP_LOW: 0.8, CLIP_HIGH: 1.2},
    per_token_config=(CLIP_LOW, CLIP_HIGH),
    check_config=check_clip_thresholds,
)
