"""Trajectories into datums: one datum per multi-turn episode whose turns extend each other, and
advantages, logprobs and the mask only on the tokens the model produced."""

import asyncio

import numpy as np
import pytest
from transformers import AutoTokenizer

from anvil.tiny_qwen3 import ensure_tiny_qwen3
from renderers import get_renderer
from rl.advantages import group_advantages, is_constant
from rl.datums import loss_input, trajectory_datums
from rl.envs.guess_number import GuessNumberEnv
from rl.types import Trajectory, TrajectoryGroup, Transition


@pytest.fixture(scope="module")
def renderer(tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_qwen3(tmp_path_factory.mktemp("models")))
    # Qwen2.5's template writes earlier turns as they were, so every observation extends the last
    return get_renderer("qwen2_5", tokenizer)


def _play(renderer, guesses: list[str], secret: int = 6) -> Trajectory:
    """A guess-the-number episode with scripted replies, recorded as the rollout would."""
    env = GuessNumberEnv(secret=secret, high=8, max_turns=4, renderer=renderer)
    observation, _ = asyncio.run(env.initial_observation())
    end = renderer.get_stop_sequences()
    transitions = []
    for turn, guess in enumerate(guesses):
        action = renderer.tokenizer.encode(guess, add_special_tokens=False) + ([end[0]] if isinstance(end[0], int) else
                                                                              renderer.tokenizer.encode(end[0], add_special_tokens=False))
        result = asyncio.run(env.step(action))
        logprobs = [-0.1 * (turn + 1)] * len(action)
        transitions.append(Transition(observation.to_ints(), action, logprobs, result.reward, result.metrics))
        if result.episode_done:
            break
        observation = result.next_observation
    return Trajectory(transitions)


def test_multi_turn_episode_is_one_datum_with_only_the_models_tokens_marked(renderer, capsys):
    trajectory = _play(renderer, ["3", "7", "6"])
    assert [t.reward for t in trajectory.transitions] == [0.0, 0.0, pytest.approx(1.0 - 0.5 * 2 / 3)]
    (datum,) = trajectory_datums(trajectory, advantage=0.75)
    targets = loss_input(datum, "target_tokens").astype(int)
    mask, advantages, logprobs = (loss_input(datum, k) for k in ("mask", "advantages", "logprobs"))
    # every target position that is a token the model sampled, in order, and nothing else
    sequence = datum.model_input.to_ints() + [int(targets[-1])]
    own_positions = []
    position = 0
    for transition in trajectory.transitions:
        start = len(transition.observation)
        assert sequence[:start] == transition.observation, "each observation extends the conversation so far"
        own_positions += list(range(start, start + len(transition.action)))
        position = start + len(transition.action)
    assert position == len(sequence)
    expected_mask = np.zeros(len(sequence) - 1)
    expected_mask[[p - 1 for p in own_positions]] = 1.0  # target i is token i + 1
    with capsys.disabled():
        print("\n  target token           mask  advantage  logprob")
        for i, token in enumerate(targets):
            print(f"  {renderer.tokenizer.decode([token])!r:22} {mask[i]:4.0f}  {advantages[i]:9.2f}  {logprobs[i]:7.2f}")
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(advantages, 0.75 * expected_mask)
    turn_logprobs = np.concatenate([t.action_logprobs for t in trajectory.transitions])
    np.testing.assert_allclose(logprobs[mask > 0], turn_logprobs, rtol=1e-6)
    assert np.all(logprobs[mask == 0] == 0)


def test_an_observation_that_rewrites_history_starts_a_new_datum():
    first = Transition(observation=[1, 2, 3], action=[4, 5], action_logprobs=[-1.0, -2.0], reward=0.0)
    # the next observation does not start with [1, 2, 3, 4, 5]: the template rewrote turn one
    second = Transition(observation=[1, 2, 9, 4, 5, 6], action=[7], action_logprobs=[-3.0], reward=1.0)
    datums = trajectory_datums(Trajectory([first, second]), advantage=1.0)
    assert [d.model_input.to_ints() for d in datums] == [[1, 2, 3, 4], [1, 2, 9, 4, 5, 6]]
    assert loss_input(datums[1], "mask").tolist() == [0, 0, 0, 0, 0, 1]


def test_group_advantages_centre_rewards_and_constant_groups_are_found():
    assert group_advantages([1.0, 0.0, 0.0, 1.0]) == [0.5, -0.5, -0.5, 0.5]
    one = lambda r: Trajectory([Transition([1], [2], [-1.0], r)])  # noqa: E731
    assert is_constant(TrajectoryGroup([one(1.0), one(1.0)]))
    assert not is_constant(TrajectoryGroup([one(1.0), one(0.0)]))
