"""Rollouts through the SDK: every env of every group samples at once, so many requests are in
flight and the sampling engines batch them.

With a `seed`, every sampling request gets its own seed derived from it (per group, env and
turn), so a run samples the same tokens when repeated on the same weights."""

import asyncio
from collections.abc import Sequence

import tinker
from tinker import types

from rl.types import Env, GroupBuilder, Trajectory, TrajectoryGroup, Transition

# an episode that never ends (an env bug) is cut here rather than hanging the run
MAX_TURNS = 64


async def run_episode(
    sampler: tinker.SamplingClient, env: Env, params: types.SamplingParams, seed: int | None = None
) -> Trajectory:
    observation, stop = await env.initial_observation()
    transitions = []
    for turn in range(MAX_TURNS):
        update = {"stop": stop} if seed is None else {"stop": stop, "seed": _derived(seed, turn)}
        turn_params = params.model_copy(update=update)
        result = await sampler.sample(observation, num_samples=1, sampling_params=turn_params)
        sequence = result.sequences[0]
        action = list(sequence.tokens)
        step = await env.step(action)
        transitions.append(
            Transition(observation.to_ints(), action, list(sequence.logprobs or []), step.reward, step.metrics)
        )
        if step.episode_done:
            return Trajectory(transitions)
        if step.next_observation is None:
            raise ValueError("an env step that does not end the episode must give the next observation")
        observation, stop = step.next_observation, step.next_stop or stop
    raise RuntimeError(f"episode did not end within {MAX_TURNS} turns")


async def run_group(
    sampler: tinker.SamplingClient, builder: GroupBuilder, params: types.SamplingParams, step: int = 0,
    seed: int | None = None,
) -> TrajectoryGroup:
    envs = builder.make_envs()
    trajectories = await asyncio.gather(
        *(run_episode(sampler, env, params, None if seed is None else _derived(seed, i)) for i, env in enumerate(envs))
    )
    return TrajectoryGroup(list(trajectories), sampled_at_step=step)


async def run_groups(
    sampler: tinker.SamplingClient, builders: Sequence[GroupBuilder], params: types.SamplingParams, step: int = 0,
    seed: int | None = None,
) -> list[TrajectoryGroup]:
    return list(await asyncio.gather(
        *(run_group(sampler, b, params, step, None if seed is None else _derived(seed, g)) for g, b in enumerate(builders))
    ))


def _derived(seed: int, index: int) -> int:
    """A distinct seed for the index-th child of `seed`, within the 63 bits a seed may hold."""
    return (seed * 1_000_003 + index * 7_919 + 1) % (1 << 62)
