"""Built-in losses by name: the one place the trainer and the gateway look a loss up."""

from losses import cispo, cross_entropy, dro, importance_sampling, ppo
from losses.types import LossInputError, LossSpec

LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (cross_entropy.SPEC, importance_sampling.SPEC, ppo.SPEC, cispo.SPEC, dro.SPEC)
}


def get_loss(name: str) -> LossSpec:
    try:
        return LOSSES[name]
    except KeyError:
        known = ", ".join(sorted(LOSSES))
        raise LossInputError("loss_fn", f"unknown loss {name!r}; built-in losses are: {known}") from None
