"""Rows of one micro-batch grouped by length, so the base model's pass pads each row only to the
longest row of its own group instead of the longest in the batch.

A padded position costs a whole row of compute in every layer: RL batches, whose sequences range
from a few tokens to thousands, would spend most of a pass on padding. Each group is one more pass
of the base model, which has a fixed cost, so a row only leaves a group when that saves both a
fraction of its group's length and a minimum number of tokens.
"""

# a row starts a new group when it is shorter than this fraction of the group's longest row...
BUCKET_RATIO = 0.75
# ...and its padding there would be at least this many tokens
MIN_PADDING_SAVED = 64


def length_buckets(lengths: list[int]) -> list[list[int]]:
    """Row indices in groups of similar length; within a group, indices in their original order
    (so rows that were contiguous per adapter stay so)."""
    by_length = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    longest = 0
    for i in by_length:
        n = lengths[i]
        if not buckets or (n < BUCKET_RATIO * longest and longest - n >= MIN_PADDING_SAVED):
            buckets.append([])
            longest = n
        buckets[-1].append(i)
    return [sorted(bucket) for bucket in buckets]
