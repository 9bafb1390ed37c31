"""A rendered supervised example as a tinker.Datum for the cross_entropy loss."""

from collections.abc import Sequence

import tinker


def datum_from_example(
    model_input: tinker.ModelInput,
    weights: Sequence[float],
    max_length: int | None = None,
    normalize_weights: bool = False,
) -> tinker.Datum:
    """Shift the example into next-token targets: the model reads tokens[:-1] and is scored on
    tokens[1:], each target keeping the weight of the token it is.

    `max_length` caps the datum's model_input length (the tokens the model reads); the end of a
    longer example is cut. With `normalize_weights`, weights are scaled to sum to 1 so that every
    example counts the same in a batch whatever its length (an all-zero example stays all zero).
    """
    tokens = model_input.to_ints()
    if len(tokens) != len(weights):
        raise ValueError(f"{len(tokens)} tokens but {len(weights)} weights")
    if len(tokens) < 2:
        raise ValueError("an example needs at least two tokens to have one next-token target")
    if max_length is not None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        tokens, weights = tokens[: max_length + 1], weights[: max_length + 1]
    target_weights = [float(w) for w in weights[1:]]
    if normalize_weights:
        total = sum(target_weights)
        if total > 0:
            target_weights = [w / total for w in target_weights]
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": target_weights},
    )
