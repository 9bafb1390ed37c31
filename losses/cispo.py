"""CISPO: loss = -Σ_t sg(clip(r_t, low, high))·lp_t·A_t, r_t = exp(lp_t - q_t), sg = stop-gradient.

Source: the CISPO objective of the MiniMax-M1 technical report (MiniMax 2025), which clips the
importance-sampling weight instead of the token update, with the bounds named as in the Tinker loss
docs (defaults clip_low_threshold 0.0, clip_high_threshold 4.0). Because the clipped weight is a
constant for autograd, every token keeps a gradient -clip(r_t)·A_t, however far its ratio has
drifted; only its size is bounded. Positions with A_t = 0 contribute nothing.

The thresholds may arrive per token; the trainer always hands them to us as [T] tensors in `inputs`.
"""

from collections.abc import Mapping

import torch

from losses.clip_thresholds import CLIP_HIGH, CLIP_LOW, check_clip_thresholds
from losses.diagnostics import drift_metrics, trained_token_mask, trained_token_mean
from losses.types import LossResult, LossSpec


def cispo(lp_T: torch.Tensor, inputs: Mapping[str, torch.Tensor], config: Mapping[str, float]) -> LossResult:
    sampler_lp_T = inputs["logprobs"]
    advantages_T = inputs["advantages"]
    low_T = inputs[CLIP_LOW]
    high_T = inputs[CLIP_HIGH]

    lp_T = lp_T.float()
    log_ratio_T = lp_T - sampler_lp_T
    weight_T = torch.clamp(torch.exp(log_ratio_T), min=low_T, max=high_T).detach()
    loss = -(weight_T * lp_T * advantages_T).sum()

    trained_T = trained_token_mask(advantages_T)
    with torch.no_grad():
        ratio_T = torch.exp(log_ratio_T.detach())
        # clipping is active where the weight differs from the raw ratio, whatever the advantage's sign
        clip_active_T = (ratio_T < low_T) | (ratio_T > high_T)
        metrics = {
            **drift_metrics(log_ratio_T, trained_T),
            "clip_fraction:mean": trained_token_mean(clip_active_T, trained_T, empty_value=0.0),
        }
    return LossResult(loss=loss, metrics=metrics)


SPEC = LossSpec(
    name="cispo",
    compute=cispo,
    required_inputs=("logprobs", "advantages"),
    config_defaults={CLIP_LOW: 0.0, CLIP_HIGH: 4.0},
    per_token_config=(CLIP_LOW, CLIP_HIGH),
    check_config=check_clip_thresholds,
)
