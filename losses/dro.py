"""DRO: loss = -Σ_t [lp_t·A_t - ½·β·(lp_t - q_t)²].

Source: the Tinker loss docs (`dro`), a direct-reward objective with a quadratic penalty that keeps
the trainer's logprobs near the sampler's. Gradient per token: -A_t + β·(lp_t - q_t).

The quadratic term does not vanish where A_t = 0: every position of the request, prompt and
observation tokens included, is pulled toward its q_t. Clients that pad prompt positions with q = 0
therefore also push those positions' logprobs up toward 0 with strength β. We implement the formula
as published and say so in docs/losses.md rather than silently masking zero-advantage positions.

β (`beta`) defaults to 0.05, the value of the only published example; β = 0 leaves the plain
policy-gradient term Σ lp·A. β must be >= 0: a negative β would reward drifting away from q.
"""

from collections.abc import Mapping

import torch

from losses.diagnostics import drift_metrics, trained_token_mask
from losses.types import LossInputError, LossResult, LossSpec

DEFAULT_BETA = 0.05


def dro(lp_T: torch.Tensor, inputs: Mapping[str, torch.Tensor], config: Mapping[str, float]) -> LossResult:
    sampler_lp_T = inputs["logprobs"]
    advantages_T = inputs["advantages"]
    beta = config["beta"]

    lp_T = lp_T.float()
    log_ratio_T = lp_T - sampler_lp_T
    loss = -(lp_T * advantages_T - 0.5 * beta * log_ratio_T.square()).sum()
    return LossResult(loss=loss, metrics=drift_metrics(log_ratio_T, trained_token_mask(advantages_T)))


def check_beta(config: Mapping[str, float]) -> None:
    beta = config["beta"]
    if beta < 0:
        raise LossInputError("beta", f"must be >= 0 (a negative beta rewards drift from q); got {beta}")


SPEC = LossSpec(
    name="dro",
    compute=dro,
    required_inputs=("logprobs", "advantages"),
    config_defaults={"beta": DEFAULT_BETA},
    check_config=check_beta,
)
