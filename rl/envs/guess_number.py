"""Guess the number: a multi-turn task. The env picks a secret in [1, high]; each turn the model
guesses and hears "Higher.", "Lower." or "Correct!". Reward 1 for finding it, less the later it
is found; 0 for running out of turns or answering with something that is not a number.

The conversation is re-rendered with the renderer every turn, so the model always sees the
conversation exactly as its chat template writes it.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tinker import types

from renderers.types import Renderer
from rl.types import Env, GroupBuilder, StepResult, StopCondition


def opening(high: int) -> str:
    return f"I picked a number from 1 to {high}. Guess it; answer with the number only."


class GuessNumberEnv:
    def __init__(self, secret: int, high: int, max_turns: int, renderer: Renderer):
        self.secret, self.high, self.max_turns, self.renderer = secret, high, max_turns, renderer
        self.messages: list[dict] = [{"role": "user", "content": opening(high)}]
        self.turns = 0

    async def initial_observation(self) -> tuple[types.ModelInput, StopCondition]:
        return self.renderer.build_generation_prompt(self.messages), self.renderer.get_stop_sequences()

    async def step(self, action: list[int]) -> StepResult:
        self.turns += 1
        reply = (self.renderer.parse_response(action).message.get("content") or "").strip()
        self.messages.append({"role": "assistant", "content": reply})
        found = reply.isdigit() and int(reply) == self.secret
        if found or not reply.isdigit() or self.turns >= self.max_turns:
            # found on turn 1 → 1.0, on the last allowed turn → 0.5
            reward = 1.0 - 0.5 * (self.turns - 1) / max(1, self.max_turns - 1) if found else 0.0
            return StepResult(reward, True, metrics={"found": float(found), "turns": float(self.turns)})
        self.messages.append({"role": "user", "content": "Higher." if int(reply) < self.secret else "Lower."})
        return StepResult(
            0.0, False, next_observation=self.renderer.build_generation_prompt(self.messages),
            next_stop=self.renderer.get_stop_sequences(),
        )


@dataclass
class GuessNumberGroup:
    secret: int
    high: int
    max_turns: int
    renderer: Renderer
    group_size: int

    def make_envs(self) -> Sequence[Env]:
        return [GuessNumberEnv(self.secret, self.high, self.max_turns, self.renderer) for _ in range(self.group_size)]


class GuessNumberDataset:
    def __init__(self, renderer: Renderer, groups: int, group_size: int, high: int = 8, max_turns: int = 4,
                 seed: int = 0, batches: int = 10_000):
        self.renderer, self.groups, self.group_size = renderer, groups, group_size
        self.high, self.max_turns, self.seed, self.batches = high, max_turns, seed, batches

    def __len__(self) -> int:
        return self.batches

    def get_batch(self, index: int) -> Sequence[GroupBuilder]:
        rng = random.Random(self.seed * 1_000_003 + index)
        return [
            GuessNumberGroup(rng.randint(1, self.high), self.high, self.max_turns, self.renderer, self.group_size)
            for _ in range(self.groups)
        ]
