"""Every built-in loss end to end through the official SDK on anvil/tiny-qwen3.

For each loss: `loss:sum` equals the formula evaluated here on the `forward` logprobs of the same
data, and one optimizer step with the built-in loss moves the weights exactly as one step with
`forward_backward_custom` computing the same formula client-side.
"""

import numpy as np
import pytest
import tinker
import torch
from tinker import types

from sdk_helpers import PRECISIONS, logprobs_of, new_trainer, sft_datum

ADAM = types.AdamParams(learning_rate=1e-2)


def formula(loss_fn: str, lp, q, adv, config: dict):
    """The documented losses, written out independently of losses/ (torch or numpy inputs)."""
    lib = torch if isinstance(lp, torch.Tensor) else np
    ratio = lib.exp(lp - q)
    if loss_fn == "importance_sampling":
        return -(ratio * adv).sum()
    if loss_fn == "ppo":
        lo, hi = config.get("clip_low_threshold", 0.8), config.get("clip_high_threshold", 1.2)
        return -lib.minimum(ratio * adv, lib.clip(ratio, lo, hi) * adv).sum()
    if loss_fn == "cispo":
        lo, hi = config.get("clip_low_threshold", 0.0), config.get("clip_high_threshold", 4.0)
        weight = lib.clip(ratio, lo, hi)
        weight = weight.detach() if lib is torch else weight
        return -(weight * lp * adv).sum()
    if loss_fn == "dro":
        beta = config.get("beta", 0.05)
        return -(lp * adv - 0.5 * beta * (lp - q) ** 2).sum()
    raise ValueError(loss_fn)


CASES = [
    ("importance_sampling", {}),
    ("ppo", {}),
    ("ppo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.05}),
    ("cispo", {}),
    ("cispo", {"clip_low_threshold": 0.5, "clip_high_threshold": 1.1}),
    ("dro", {}),
    ("dro", {"beta": 0.3}),
]


def _rl_data(tokenizer, lp_list: list[np.ndarray], seed: int) -> list[types.Datum]:
    """Datums whose sampler logprobs sit near the trainer's (so some ratios clip and some don't),
    with positive, negative and zero advantages."""
    rng = np.random.default_rng(seed)
    texts = ["The capital of France is Paris.", "Two plus two is four. Three plus three is six."]
    data = []
    for text, lp in zip(texts, lp_list, strict=True):
        tokens = tokenizer.encode(text)
        q = (lp + rng.normal(0, 0.3, size=lp.shape)).astype(np.float32)
        adv = rng.choice([-1.5, -0.5, 0.0, 0.7, 2.0], size=lp.shape).astype(np.float32)
        adv[:2] = 0.0  # a prompt: no advantage
        data.append(types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": np.asarray(tokens[1:], dtype=np.int64), "logprobs": q, "advantages": adv},
        ))
    return data


def _forward_logprobs(trainer, tokenizer) -> list[np.ndarray]:
    texts = ["The capital of France is Paris.", "Two plus two is four. Three plus three is six."]
    return logprobs_of(trainer.forward([sft_datum(tokenizer.encode(t)) for t in texts], "cross_entropy").result())


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("loss_fn", "config"), CASES)
def test_builtin_loss_matches_formula_and_custom_loss_step(client_at, precision, tokenizer, loss_fn, config):
    # the same tolerances at both precisions: the built-in and the custom step run the same
    # trainer computation, and the formula is evaluated on the logprobs the trainer returned
    service_client = client_at(precision)
    seed = 100 + CASES.index((loss_fn, config))
    builtin = new_trainer(service_client, rank=8, seed=seed)
    custom = new_trainer(service_client, rank=8, seed=seed)
    # one SFT step first, so the LoRA B matrices are nonzero and every weight gets a gradient
    for trainer in (builtin, custom):
        trainer.forward_backward([sft_datum(tokenizer.encode("Sorted, they are 1, 3, 5, 9."))], "cross_entropy")
        trainer.optim_step(ADAM).result()
    lp_list = _forward_logprobs(builtin, tokenizer)
    data = _rl_data(tokenizer, lp_list, seed)

    result = builtin.forward_backward(data, loss_fn, loss_fn_config=config or None).result()
    expected = sum(
        formula(loss_fn, lp.astype(np.float64), d.loss_fn_inputs["logprobs"].to_numpy(), d.loss_fn_inputs["advantages"].to_numpy(), config)
        for lp, d in zip(lp_list, data, strict=True)
    )
    np.testing.assert_allclose(result.metrics["loss:sum"], expected, rtol=1e-4, atol=1e-4)
    for returned, lp in zip(logprobs_of(result), lp_list, strict=True):
        np.testing.assert_allclose(returned, lp, atol=1e-5)

    def client_side(batch, logprobs_list):
        loss = sum(
            formula(loss_fn, lp, torch.as_tensor(d.loss_fn_inputs["logprobs"].to_numpy()),
                    torch.as_tensor(d.loss_fn_inputs["advantages"].to_numpy()), config)
            for d, lp in zip(batch, logprobs_list, strict=True)
        )
        return loss, {}

    custom_result = custom.forward_backward_custom(data, client_side).result()
    np.testing.assert_allclose(custom_result.metrics["loss:sum"], result.metrics["loss:sum"], rtol=1e-4, atol=1e-4)
    builtin.optim_step(ADAM).result()
    custom.optim_step(ADAM).result()
    after_builtin, after_custom = _forward_logprobs(builtin, tokenizer), _forward_logprobs(custom, tokenizer)
    assert max(np.abs(a - b).max() for a, b in zip(after_builtin, lp_list)) > 1e-4, "the step moved nothing"
    for a, b in zip(after_builtin, after_custom, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_rl_loss_diagnostics_are_returned(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=4, seed=150)
    data = _rl_data(tokenizer, _forward_logprobs(trainer, tokenizer), seed=150)
    metrics = trainer.forward(data, "ppo").result().metrics
    assert {"loss:sum", "ratio:mean", "clip_fraction:mean", "kl_sample_train:mean"} <= set(metrics)
    assert 0.0 < metrics["clip_fraction:mean"] < 1.0


def _ppo_datum(**inputs) -> types.Datum:
    base = {"target_tokens": np.asarray([5, 6, 7], dtype=np.int64), "logprobs": np.zeros(3, np.float32),
            "advantages": np.ones(3, np.float32)}
    base.update(inputs)
    return types.Datum(model_input=types.ModelInput.from_ints([4, 5, 6]), loss_fn_inputs={k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    ("datum_inputs", "config", "message"),
    [
        ({"advantages": None}, None, r"data\[0\]\.loss_fn_inputs\['advantages'\].*required by ppo"),
        ({"logprobs": np.zeros(2, np.float32)}, None, r"loss_fn_inputs\['logprobs'\].*shape \[2\]"),
        ({"advantages": np.ones(3, np.int64)}, None, r"loss_fn_inputs\['advantages'\].*float32.*int64"),
        ({}, {"clip_epsilon": 0.2}, r"loss_fn_config\['clip_epsilon'\].*not a config key of ppo"),
        ({}, {"clip_high_threshold": 0.5}, r"clip_high_threshold.*>= 1"),
        ({"clip_low_threshold": np.asarray([0.8, -1.0, 0.8], np.float32)}, None, r"loss_fn_inputs\['clip_low_threshold'\].*\[0, 1\]"),
    ],
)
def test_bad_loss_inputs_are_user_errors_naming_the_field(service_client, datum_inputs, config, message):
    trainer = new_trainer(service_client, rank=4, seed=160)
    with pytest.raises(tinker.RequestFailedError, match=message) as caught:
        trainer.forward_backward([_ppo_datum(**datum_inputs)], "ppo", loss_fn_config=config).result()
    assert caught.value.category == "user"
    # the same client keeps working
    assert trainer.forward([_ppo_datum()], "ppo").result().metrics["loss:sum"] != 0


def test_extra_float_inputs_are_ignored(service_client):
    trainer = new_trainer(service_client, rank=4, seed=170)
    plain = trainer.forward([_ppo_datum()], "ppo").result().metrics["loss:sum"]
    with_mask = trainer.forward([_ppo_datum(mask=np.ones(3, np.float32))], "ppo").result().metrics["loss:sum"]
    assert plain == with_mask


def test_per_token_clip_thresholds_through_the_sdk(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=4, seed=180)
    lp_list = _forward_logprobs(trainer, tokenizer)
    data = _rl_data(tokenizer, lp_list, seed=180)
    rng = np.random.default_rng(180)
    expected = 0.0
    for datum, lp in zip(data, lp_list, strict=True):
        low = rng.uniform(0.5, 1.0, size=lp.shape).astype(np.float32)
        high = rng.uniform(1.0, 1.5, size=lp.shape).astype(np.float32)
        datum.loss_fn_inputs["clip_low_threshold"] = types.TensorData.from_numpy(low)
        datum.loss_fn_inputs["clip_high_threshold"] = types.TensorData.from_numpy(high)
        q, adv = datum.loss_fn_inputs["logprobs"].to_numpy(), datum.loss_fn_inputs["advantages"].to_numpy()
        ratio = np.exp(lp.astype(np.float64) - q)
        expected += -np.minimum(ratio * adv, np.clip(ratio, low, high) * adv).sum()
    result = trainer.forward(data, "ppo").result()
    np.testing.assert_allclose(result.metrics["loss:sum"], expected, rtol=1e-4, atol=1e-4)
