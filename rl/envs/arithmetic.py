"""Arithmetic with exact answers: "7+5=" → reward 1 if the reply is exactly "12".

A verifiable task small enough for the built-in tiny model to learn on a CPU, and real enough
that its accuracy means something: the answer is right or it is not.

Two formats. `PlainFormat`: the prompt is the bare problem ("7+5=") and the answer ends with a
newline; a small model finds both operands right before the answer (the built-in tiny model
learns it; behind a 20-token chat header its 2 layers do not). `ChatFormat`: a chat turn
("What is 7+5?") rendered with a renderer, for real chat models.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tinker import types

from renderers import TrainOnWhat, datum_from_example
from renderers.types import Renderer
from rl.types import Env, GroupBuilder, StepResult, StopCondition


class ProblemFormat(Protocol):
    def prompt(self, a: int, b: int) -> types.ModelInput: ...

    def stop(self) -> StopCondition: ...

    def answer(self, action: list[int]) -> str:
        """The reply's text, as the task reads it."""
        ...

    def sft_datum(self, a: int, b: int) -> types.Datum:
        """The problem with its correct answer, trained on the answer only (SFT on the format)."""
        ...


class PlainFormat:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prompt(self, a: int, b: int) -> types.ModelInput:
        return types.ModelInput.from_ints(self._encode(f"{a}+{b}="))

    def stop(self) -> StopCondition:
        return ["\n"]

    def answer(self, action: list[int]) -> str:
        text = self.tokenizer.decode(action)
        return text[:-1] if text.endswith("\n") else text + "<no end>"

    def sft_datum(self, a: int, b: int, answer: int | None = None) -> types.Datum:
        """`answer` defaults to the right one; another teaches the format without the fact."""
        prompt, answer = self._encode(f"{a}+{b}="), self._encode(f"{a + b if answer is None else answer}\n")
        tokens = prompt + answer
        weights = [0.0] * (len(prompt) - 1) + [1.0] * len(answer)
        return types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": np.asarray(tokens[1:]), "weights": np.asarray(weights, np.float32)},
        )


class ChatFormat:
    def __init__(self, renderer: Renderer):
        self.renderer = renderer

    @staticmethod
    def conversation(a: int, b: int) -> list[dict]:
        return [{"role": "user", "content": f"What is {a}+{b}?"}, {"role": "assistant", "content": str(a + b)}]

    def prompt(self, a: int, b: int) -> types.ModelInput:
        return self.renderer.build_generation_prompt(self.conversation(a, b)[:1])

    def stop(self) -> StopCondition:
        return self.renderer.get_stop_sequences()

    def answer(self, action: list[int]) -> str:
        parsed = self.renderer.parse_response(action)
        return (parsed.message.get("content") or "").strip() if parsed.is_well_formed else "<malformed>"

    def sft_datum(self, a: int, b: int) -> types.Datum:
        model_input, weights = self.renderer.build_supervised_example(
            self.conversation(a, b), TrainOnWhat.LAST_ASSISTANT_MESSAGE
        )
        return datum_from_example(model_input, weights)


class AdditionEnv:
    def __init__(self, a: int, b: int, problem_format: ProblemFormat):
        self.a, self.b, self.format = a, b, problem_format

    async def initial_observation(self) -> tuple[types.ModelInput, StopCondition]:
        return self.format.prompt(self.a, self.b), self.format.stop()

    async def step(self, action: list[int]) -> StepResult:
        reply = self.format.answer(action)
        correct = reply == str(self.a + self.b)
        return StepResult(
            reward=1.0 if correct else 0.0,
            episode_done=True,
            metrics={"accuracy": float(correct), "format": float(reply.isdigit())},
        )


@dataclass
class AdditionGroup:
    a: int
    b: int
    problem_format: ProblemFormat
    group_size: int

    def make_envs(self) -> Sequence[Env]:
        return [AdditionEnv(self.a, self.b, self.problem_format) for _ in range(self.group_size)]


class AdditionDataset:
    """`groups` problems per batch, operands in [0, max_operand], from a seeded stream: batch i is
    the same problems every time it is asked for.

    With `balance_sums`, group g asks for the sum g mod (2·max_operand + 1) (a problem drawn
    among those with that sum), so every answer is right equally often. Drawn uniformly, the
    middle sums are the commonest (with operands 0..2, "2" is right for 3 problems in 9), and a
    policy that answers the commonest sum whatever it is asked beats one that guesses: RL from a
    guessing policy then learns that constant rather than to read the question."""

    def __init__(self, problem_format: ProblemFormat, groups: int, group_size: int, max_operand: int = 9,
                 seed: int = 0, batches: int = 10_000, balance_sums: bool = False):
        self.format, self.groups, self.group_size = problem_format, groups, group_size
        self.max_operand, self.seed, self.batches, self.balance_sums = max_operand, seed, batches, balance_sums

    def __len__(self) -> int:
        return self.batches

    def problems(self, index: int) -> list[tuple[int, int]]:
        rng = random.Random(self.seed * 1_000_003 + index)
        operands = range(self.max_operand + 1)
        if not self.balance_sums:
            return [(rng.choice(operands), rng.choice(operands)) for _ in range(self.groups)]
        sums = 2 * self.max_operand + 1
        problems = []
        for g in range(self.groups):
            total = g % sums
            a = rng.choice([a for a in operands if 0 <= total - a <= self.max_operand])
            problems.append((a, total - a))
        return problems

    def get_batch(self, index: int) -> Sequence[GroupBuilder]:
        return [AdditionGroup(a, b, self.format, self.group_size) for a, b in self.problems(index)]
