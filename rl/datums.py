"""Trajectories into training datums: one sequence per run of turns that extend each other.

A multi-turn episode whose every observation starts with the previous observation and action
(the usual case: the env appends its reply to the conversation) becomes ONE datum: the whole
conversation, with the model's own tokens marked. Where an observation does not extend what came
before (a chat template that rewrites history, such as Qwen3 dropping old thinking), a new datum
starts, so every datum holds exactly the tokens the model saw.

Each datum's `loss_fn_inputs`: `target_tokens`, `logprobs` (the sampler's, on the model's own
tokens; 0 elsewhere), `advantages` (on the model's own tokens; 0 elsewhere), and `mask` (1 on the
model's own tokens), which the built-in RL losses ignore and this library reads back.
"""

from dataclasses import dataclass

import numpy as np
from tinker import types

from rl.types import Trajectory


@dataclass
class _Sequence:
    tokens: list[int]
    mask: list[float]
    logprobs: list[float]
    advantages: list[float]

    def extend(self, tokens: list[int], own: bool, logprobs: list[float] | None = None, advantage: float = 0.0):
        self.tokens += tokens
        self.mask += [1.0 if own else 0.0] * len(tokens)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(tokens)
        self.advantages += [advantage if own else 0.0] * len(tokens)


def trajectory_datums(trajectory: Trajectory, advantage: float) -> list[types.Datum]:
    """The datums of one trajectory, every action token carrying `advantage`."""
    sequences: list[_Sequence] = []
    for transition in trajectory.transitions:
        if len(transition.action_logprobs) != len(transition.action):
            raise ValueError("every action token needs its sampler logprob")
        current = sequences[-1] if sequences else None
        if current is not None and transition.observation[: len(current.tokens)] == current.tokens:
            new_observation = transition.observation[len(current.tokens) :]
        else:
            current = _Sequence([], [], [], [])
            sequences.append(current)
            new_observation = transition.observation
        current.extend(new_observation, own=False)
        current.extend(transition.action, own=True, logprobs=transition.action_logprobs, advantage=advantage)
    return [_datum(s) for s in sequences if len(s.tokens) >= 2]


def _datum(sequence: _Sequence) -> types.Datum:
    # position i of the input predicts token i + 1: every per-token array shifts by one
    return types.Datum(
        model_input=types.ModelInput.from_ints(sequence.tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": np.asarray(sequence.tokens[1:], dtype=np.int64),
            "logprobs": np.asarray(sequence.logprobs[1:], dtype=np.float32),
            "advantages": np.asarray(sequence.advantages[1:], dtype=np.float32),
            "mask": np.asarray(sequence.mask[1:], dtype=np.float32),
        },
    )


def loss_input(datum: types.Datum, name: str) -> np.ndarray:
    return np.asarray(datum.loss_fn_inputs[name].to_numpy())


def with_inputs(datum: types.Datum, **inputs: np.ndarray) -> types.Datum:
    """The datum with some loss inputs replaced."""
    merged = dict(datum.loss_fn_inputs)
    merged.update({k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()})
    return types.Datum(model_input=datum.model_input, loss_fn_inputs=merged)


def full_sequence(datum: types.Datum) -> list[int]:
    """The datum's whole token sequence: its input plus the last target."""
    return datum.model_input.to_ints() + [int(loss_input(datum, "target_tokens")[-1])]
