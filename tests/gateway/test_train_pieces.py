"""Splitting a forward_backward into pieces and merging their results."""

import numpy as np

from anvil.types import ForwardBackwardResult, ForwardBackwardWork, TrainDatum
from gateway.train_pieces import merge_results, split_work


def _work(lengths, advantages=None):
    data = []
    for i, n in enumerate(lengths):
        inputs = {"target_tokens": np.zeros(n, np.int64)}
        if advantages is not None:
            inputs["advantages"] = np.asarray(advantages[i], np.float32)
        data.append(TrainDatum(np.zeros(n, np.int64), inputs))
    return ForwardBackwardWork(data=data, loss_fn="importance_sampling", loss_config={}, forward_only=False)


def test_pieces_keep_datum_order_and_hold_at_most_the_limit():
    pieces = split_work(_work([4, 4, 4, 9, 1]), max_tokens=8)
    assert [[len(d.tokens) for d in p.data] for p in pieces] == [[4, 4], [4], [9], [1]]
    assert len(split_work(_work([3, 3]), max_tokens=100)) == 1


def test_merged_metrics_are_the_whole_requests():
    # trained tokens per piece: 2, 0 and 3
    pieces = [_work([3], [[1, 0, 1]]), _work([2], [[0, 0]]), _work([3], [[1, 1, 1]])]
    results = [
        ForwardBackwardResult([np.ones(3)], {"loss:sum": 1.0, "ratio:mean": 2.0, "gap:max": 1.0}),
        ForwardBackwardResult([np.ones(2)], {"loss:sum": 0.0, "ratio:mean": 1.0, "gap:max": 5.0}),
        ForwardBackwardResult([np.ones(3)], {"loss:sum": 2.5, "ratio:mean": 4.0, "gap:max": 2.0}),
    ]
    merged = merge_results(pieces, results)
    assert merged.metrics == {"loss:sum": 3.5, "ratio:mean": (2 * 2.0 + 3 * 4.0) / 5, "gap:max": 5.0}
    assert [len(lp) for lp in merged.logprobs] == [3, 2, 3]
    # no trained token anywhere: every piece reports the same empty value, and so does the whole
    empty = [_work([2], [[0, 0]]), _work([2], [[0, 0]])]
    same = [ForwardBackwardResult([np.ones(2)], {"ratio:mean": 1.0}) for _ in empty]
    assert merge_results(empty, same).metrics == {"ratio:mean": 1.0}
