"""Arithmetic with exact answers: "What is 7+5?" → reward 1 if the reply is exactly "12".

A verifiable task small enough for the built-in tiny model to learn on a CPU, and real enough
that its accuracy means something: the answer is right or it is not.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tinker import types

from renderers.types import Renderer
from rl.types import Env, GroupBuilder, StepResult, StopCondition


def question(a: int, b: int) -> str:
    return f"What is {a}+{b}?"


def conversation(a: int, b: int) -> list[dict]:
    """The problem and its answer as chat messages (for SFT on the task's format)."""
    return [{"role": "user", "content": question(a, b)}, {"role": "assistant", "content": str(a + b)}]


def prefill(a: int, b: int) -> str:
    """The start of the assistant's reply when the prompt restates the problem: "7+5=". A small
    model then finds both operands right before the answer."""
    return f"{a}+{b}="


class AdditionEnv:
    def __init__(self, a: int, b: int, renderer: Renderer, restate: bool = False):
        self.a, self.b, self.renderer, self.restate = a, b, renderer, restate

    async def initial_observation(self) -> tuple[types.ModelInput, StopCondition]:
        messages = [{"role": "user", "content": question(self.a, self.b)}]
        prompt = self.renderer.build_generation_prompt(messages, prefill=prefill(self.a, self.b) if self.restate else None)
        return prompt, self.renderer.get_stop_sequences()

    async def step(self, action: list[int]) -> StepResult:
        parsed = self.renderer.parse_response(action)
        reply = (parsed.message.get("content") or "").strip()
        correct = reply == str(self.a + self.b)
        well_formed = parsed.ending != "malformed" and reply.isdigit()
        return StepResult(
            reward=1.0 if correct else 0.0,
            episode_done=True,
            metrics={"accuracy": float(correct), "format": float(well_formed)},
        )


@dataclass
class AdditionGroup:
    a: int
    b: int
    renderer: Renderer
    group_size: int
    restate: bool = False

    def make_envs(self) -> Sequence[Env]:
        return [AdditionEnv(self.a, self.b, self.renderer, self.restate) for _ in range(self.group_size)]


class AdditionDataset:
    """`groups` problems per batch, operands in [0, max_operand], drawn from a seeded stream."""

    def __init__(self, renderer: Renderer, groups: int, group_size: int, max_operand: int = 9, seed: int = 0,
                 batches: int = 10_000, restate: bool = False):
        self.renderer, self.groups, self.group_size = renderer, groups, group_size
        self.max_operand, self.seed, self.batches, self.restate = max_operand, seed, batches, restate

    def __len__(self) -> int:
        return self.batches

    def problems(self, index: int) -> list[tuple[int, int]]:
        rng = random.Random(self.seed * 1_000_003 + index)
        return [(rng.randint(0, self.max_operand), rng.randint(0, self.max_operand)) for _ in range(self.groups)]

    def get_batch(self, index: int) -> Sequence[GroupBuilder]:
        return [AdditionGroup(a, b, self.renderer, self.group_size, self.restate) for a, b in self.problems(index)]
