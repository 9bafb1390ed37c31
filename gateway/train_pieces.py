"""A large forward_backward, run as pieces in successive press rounds.

One request of 100k tokens holds the trainer for the whole pass; every other user's tiny step
waits behind it. Split into pieces of at most `max_tokens` (whole datums, in order), the press runs
one piece per round, and work that arrived meanwhile from other models joins each round's batch.

Exact, because every loss is a sum over tokens (losses/types.py LossResult): gradients of the
pieces accumulate in the adapter as the whole request's would, `loss:sum` adds up, logprobs
concatenate, and each `:mean` metric (a mean over the request's trained tokens, the positions
with a nonzero advantage: losses/diagnostics.py) is the pieces' means weighted by their trained
tokens.
"""

from dataclasses import replace

import numpy as np

from anvil.types import ForwardBackwardResult, ForwardBackwardWork, TrainDatum


def split_work(work: ForwardBackwardWork, max_tokens: int) -> list[ForwardBackwardWork]:
    """Consecutive datums, at most `max_tokens` per piece (a longer datum is a piece alone)."""
    pieces: list[list[TrainDatum]] = [[]]
    tokens = 0
    for datum in work.data:
        if pieces[-1] and tokens + len(datum.tokens) > max_tokens:
            pieces.append([])
            tokens = 0
        pieces[-1].append(datum)
        tokens += len(datum.tokens)
    return [replace(work, data=data) for data in pieces]


def merge_results(pieces: list[ForwardBackwardWork], results: list[ForwardBackwardResult]) -> ForwardBackwardResult:
    weights = [_trained_tokens(piece) for piece in pieces]
    metrics = {}
    for key in results[0].metrics:
        values = [r.metrics[key] for r in results]
        reduction = key.rpartition(":")[2]
        if reduction == "sum":
            metrics[key] = float(sum(values))
        elif reduction == "max":
            metrics[key] = float(max(values))
        elif reduction == "min":
            metrics[key] = float(min(values))
        elif reduction == "mean" and sum(weights) > 0:
            metrics[key] = float(np.dot(values, weights) / sum(weights))
        else:
            # a mean over no trained token is the same "unmoved policy" value in every piece
            metrics[key] = values[0]
    return ForwardBackwardResult(logprobs=[lp for r in results for lp in r.logprobs], metrics=metrics)


def _trained_tokens(work: ForwardBackwardWork) -> int:
    return sum(int(np.count_nonzero(d.inputs["advantages"])) if "advantages" in d.inputs else len(d.tokens)
               for d in work.data)
