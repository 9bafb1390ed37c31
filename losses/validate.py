"""Checks a request's loss inputs and config before any work is queued, so that every mistake
comes back to the user as an error naming the field, never as a NaN or a crash in the trainer."""

from collections.abc import Mapping, Sequence

import numpy as np

from losses.types import LossInputError, LossSpec

# per-token weights, advantages and logprobs are far smaller; a sum over many tokens of larger
# ones (or exp of a logprob difference) overflows float32 into inf, and the weights into NaN
MAX_ABS_INPUT = 1e6


def validate_loss_request(
    spec: LossSpec,
    datum_inputs: Sequence[Mapping[str, np.ndarray]],
    input_lengths: Sequence[int],
    config: Mapping[str, float],
) -> dict[str, float]:
    """Validate every datum of one request; return the config with defaults filled in.

    `datum_inputs[i]` are datum i's decoded `loss_fn_inputs`, `input_lengths[i]` its model_input
    length. Inputs the loss does not use are ignored (clients add keys such as `mask`).
    """
    resolved = resolve_config(spec, config)
    float_names = (*spec.required_inputs, *spec.optional_inputs, *spec.per_token_config)
    for i, (inputs, length) in enumerate(zip(datum_inputs, input_lengths, strict=True)):
        where = f"data[{i}].loss_fn_inputs"
        targets = inputs.get("target_tokens")
        if targets is None:
            raise LossInputError(f"{where}['target_tokens']", f"is required by {spec.name}")
        if targets.dtype != np.int64:
            raise LossInputError(f"{where}['target_tokens']", f"must be int64, got {targets.dtype}")
        if targets.ndim not in (1, 2) or targets.shape[0] != length:
            raise LossInputError(
                f"{where}['target_tokens']",
                f"shape {list(targets.shape)} does not match the model_input length {length}; "
                f"expected ({length},) or ({length}, K)",
            )
        for name in spec.required_inputs:
            if name not in inputs:
                raise LossInputError(f"{where}[{name!r}]", f"is required by {spec.name}")
        for name in float_names:
            if name in inputs:
                _check_float_input(f"{where}[{name!r}]", inputs[name], targets.shape)
        for name in spec.per_token_config:
            if name in inputs and inputs[name].size:
                # a per-token threshold is in range when its smallest and largest values both are
                for extreme in (inputs[name].min(), inputs[name].max()):
                    try:
                        spec.check_config({**resolved, name: float(extreme)})
                    except LossInputError as exc:
                        raise LossInputError(f"{where}[{name!r}]", str(exc)) from None
    return resolved


def resolve_config(spec: LossSpec, config: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(config) - set(spec.config_defaults))
    if unknown:
        allowed = ", ".join(sorted(spec.config_defaults)) or "none"
        raise LossInputError(
            f"loss_fn_config[{unknown[0]!r}]", f"is not a config key of {spec.name} (allowed: {allowed})"
        )
    resolved = dict(spec.config_defaults)
    for key, value in config.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise LossInputError(f"loss_fn_config[{key!r}]", f"must be a finite number, got {value!r}")
        resolved[key] = float(value)
    spec.check_config(resolved)
    return resolved


def _check_float_input(field: str, array: np.ndarray, target_shape: tuple[int, ...]) -> None:
    if array.dtype != np.float32:
        raise LossInputError(field, f"must be float32, got {array.dtype}")
    if array.shape != target_shape:
        raise LossInputError(
            field, f"shape {list(array.shape)} does not match target_tokens shape {list(target_shape)}"
        )
    if not np.isfinite(array).all():
        raise LossInputError(field, "contains NaN or infinite values")
    if array.size and np.abs(array).max() > MAX_ABS_INPUT:
        raise LossInputError(field, f"has values beyond ±{MAX_ABS_INPUT:g}, which overflow the loss")

