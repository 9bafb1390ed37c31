"""Diagnostics shared by the RL losses: how far the trainer's policy has drifted from the sampler's.

Every mean runs over the request's trained tokens, the positions with a nonzero advantage. Prompt
and observation positions carry A = 0 and, by the usual client convention, a sampler logprob of 0
(the sampler reports none for them); averaging over them would pull `ratio` toward exp(lp) and
report a KL that measures nothing. When a request has no trained token at all, each mean reports
the value of an unmoved policy (ratio 1, KL 0, nothing clipped) rather than being left out: the SDK
drops a metric key that is missing from any chunk when it merges chunked results.

Values are python floats computed without gradient.
"""

import torch


def trained_token_mask(advantages_T: torch.Tensor) -> torch.Tensor:
    return advantages_T != 0


def trained_token_mean(values_T: torch.Tensor, trained_T: torch.Tensor, empty_value: float) -> float:
    with torch.no_grad():
        count = int(trained_T.sum())
        if count == 0:
            return empty_value
        return float(values_T.detach().float()[trained_T].sum() / count)


def drift_metrics(log_ratio_T: torch.Tensor, trained_T: torch.Tensor) -> dict[str, float]:
    """`ratio:mean` = mean of r = exp(lp - q); `kl_sample_train:mean` = mean of q - lp.

    Because the tokens were drawn from the sampler, the mean of q - lp estimates
    KL(sampler || trainer) = E_q[log q - log p]; it is 0 when the two policies agree.
    """
    with torch.no_grad():
        log_ratio_T = log_ratio_T.detach()
        return {
            "ratio:mean": trained_token_mean(torch.exp(log_ratio_T), trained_T, empty_value=1.0),
            "kl_sample_train:mean": trained_token_mean(-log_ratio_T, trained_T, empty_value=0.0),
        }
