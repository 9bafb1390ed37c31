"""Cross entropy: loss = -Σ_t w_t · lp_t, summed over every token of every datum.

Weights are arbitrary floats: the SDK's client-side custom losses send w = -dLoss/dlp, and SFT
datums carry fractional weights. With (N, K) targets, lp and w are [T, K] and the sum runs over K
too. A datum without `weights` trains on every target (w = 1): the public record leaves this case
open, and silently training on nothing would be the worse surprise.
"""

from collections.abc import Mapping

import torch

from losses.types import LossResult, LossSpec


def cross_entropy(lp: torch.Tensor, inputs: Mapping[str, torch.Tensor], config: Mapping[str, float]) -> LossResult:
    weights = inputs["weights"]
    loss = -(weights * lp).sum()
    return LossResult(loss=loss)


SPEC = LossSpec(name="cross_entropy", compute=cross_entropy, optional_inputs={"weights": 1.0})
