"""A KL penalty against a reference model, folded into the advantages.

For every token the model produced, kl_t = q_t − ref_t, where q_t is the sampler's logprob and
ref_t the reference model's (`compute_logprobs` on the same sequence): the single-sample estimate
of KL(policy ‖ reference) along the sampled path. The penalty shapes the advantage,
A_t ← A_t − coef · kl_t, so with any of the policy-gradient losses a token the policy now favours
more than the reference does is pushed back toward it.
"""

import asyncio

import numpy as np
import tinker
from tinker import types

from rl.datums import full_sequence, loss_input, with_inputs
from rl.metric_keys import KL


async def reference_logprobs(reference: tinker.SamplingClient, datum: types.Datum) -> np.ndarray:
    """The reference's logprob of each target token of `datum`, aligned with `target_tokens`."""
    logprobs = await reference.compute_logprobs(types.ModelInput.from_ints(full_sequence(datum)))
    # position 0 has no logprob (nothing precedes it); target i is token i + 1 of the sequence
    return np.asarray(logprobs[1:], dtype=np.float64)


async def apply_kl_penalty(
    datums: list[types.Datum], reference: tinker.SamplingClient, coef: float
) -> tuple[list[types.Datum], dict[str, float]]:
    """The datums with KL-shaped advantages, and the mean KL over the model's own tokens."""
    references = await asyncio.gather(*(reference_logprobs(reference, d) for d in datums))
    shaped, kl_sum, tokens = [], 0.0, 0.0
    for datum, ref in zip(datums, references, strict=True):
        mask = loss_input(datum, "mask")
        kl = (loss_input(datum, "logprobs") - ref) * mask
        kl_sum += float(kl.sum())
        tokens += float(mask.sum())
        shaped.append(with_inputs(datum, advantages=loss_input(datum, "advantages") - coef * kl))
    return shaped, {KL: kl_sum / max(tokens, 1.0)}
