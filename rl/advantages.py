"""Group-relative advantages: each trajectory's reward against the mean of its group."""

import numpy as np

from rl.types import TrajectoryGroup


def group_advantages(rewards: list[float]) -> list[float]:
    """A = r − mean_group(r). No division by the group's std: a group where one answer in eight
    is right still pushes that answer up as hard as one where four are."""
    r = np.asarray(rewards, dtype=np.float64)
    return (r - r.mean()).tolist()


def is_constant(group: TrajectoryGroup) -> bool:
    """Every trajectory got the same reward: all advantages are zero and the group teaches
    nothing, so training on it only spends compute."""
    rewards = group.rewards
    return max(rewards) - min(rewards) < 1e-9
