"""Training data for the benchmarks: random token sequences as SDK datums."""

import numpy as np
from tinker import types


def random_datum(rng: np.random.Generator, tokens: int, vocab: int = 1000) -> types.Datum:
    """`tokens` random ids below `vocab`, each position trained with weight 1."""
    sequence = rng.integers(1, vocab, size=tokens + 1)
    return types.Datum(
        model_input=types.ModelInput.from_ints(sequence[:-1].tolist()),
        loss_fn_inputs={"target_tokens": sequence[1:], "weights": np.ones(tokens, np.float32)},
    )
