"""The RL vocabulary: environments, what an episode leaves behind, and where problems come from.

An `Env` is single-use: it gives an initial observation (the prompt, as tokens), takes the model's
action (the tokens it sampled) and answers with a reward, whether the episode is over, and the
next observation (the whole context the model sees next, as tokens). A `GroupBuilder` makes
several envs on one problem, whose rewards are compared with each other (group-relative
advantages); a `Dataset` hands out the groups of each training step.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tinker import types

# what ends one sampled action: stop strings or stop token ids, as SamplingParams.stop takes them
StopCondition = list[str] | list[int]


@dataclass
class StepResult:
    reward: float
    episode_done: bool
    # the full context for the next action (None once the episode is done)
    next_observation: types.ModelInput | None = None
    next_stop: StopCondition | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class Env(Protocol):
    async def initial_observation(self) -> tuple[types.ModelInput, StopCondition]: ...

    async def step(self, action: list[int]) -> StepResult: ...


class GroupBuilder(Protocol):
    """Several envs on one problem (a group), for group-relative advantages."""

    def make_envs(self) -> Sequence[Env]: ...


class Dataset(Protocol):
    def __len__(self) -> int: ...

    def get_batch(self, index: int) -> Sequence[GroupBuilder]:
        """The groups of training step `index`; the same index gives the same problems."""
        ...


@dataclass
class Transition:
    """One action of an episode: what the model saw, what it did, what it got."""

    observation: list[int]
    action: list[int]
    action_logprobs: list[float]  # the sampler's logprob of each action token
    reward: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Trajectory:
    transitions: list[Transition]

    @property
    def total_reward(self) -> float:
        return sum(t.reward for t in self.transitions)

    def metrics(self) -> dict[str, float]:
        """The env's metrics of every step, later steps overriding earlier ones."""
        merged: dict[str, float] = {}
        for t in self.transitions:
            merged.update(t.metrics)
        return merged


@dataclass
class TrajectoryGroup:
    trajectories: list[Trajectory]
    # the policy version (training step) whose weights sampled the group: how stale it is later
    sampled_at_step: int = 0

    @property
    def rewards(self) -> list[float]:
        return [t.total_reward for t in self.trajectories]
