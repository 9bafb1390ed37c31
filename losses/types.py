"""The loss contract shared by every built-in loss and the trainer.

A loss is a pure function of the trainer's logprobs for the target tokens and the request's
`loss_fn_inputs`; the trainer looks it up by name and never branches on it.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from anvil.errors import UserError


class LossInputError(UserError):
    """A request's loss inputs or config are unusable; `field` names the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", field=field)


@dataclass(frozen=True)
class LossResult:
    """`loss` is a scalar SUM over every token of the request; metrics use `name:reduction` keys."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


# compute(lp_T, inputs, config): lp_T are the trainer's logprobs of the target tokens, all datums
# of one request concatenated along dim 0 ([T] or [T, K]); inputs maps each float loss_fn_input
# the loss declared (required or optional) to a float32 tensor of the same leading length;
# config holds every config key of the loss, defaults filled in.
LossCompute = Callable[[torch.Tensor, Mapping[str, torch.Tensor], Mapping[str, float]], LossResult]
ConfigCheck = Callable[[Mapping[str, float]], None]


def no_config_check(config: Mapping[str, float]) -> None:
    return None


@dataclass(frozen=True)
class LossSpec:
    name: str
    compute: LossCompute
    # float inputs that must be present, beside target_tokens (always required)
    required_inputs: tuple[str, ...] = ()
    # float inputs used when present, each with the per-token value that stands in when absent
    optional_inputs: Mapping[str, float] = field(default_factory=dict)
    config_defaults: Mapping[str, float] = field(default_factory=dict)
    # config keys that may also arrive per token as loss_fn_inputs of the same name; compute then
    # receives them in `inputs` as tensors (the per-token value, or the config value broadcast)
    per_token_config: tuple[str, ...] = ()
    check_config: ConfigCheck = no_config_check
