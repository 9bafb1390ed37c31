"""One mixed-adapter pass gives every adapter exactly the gradients it gets when trained alone."""

import numpy as np
import pytest
import torch

from anvil.types import ForwardBackwardWork, LoraSpec, TrainDatum
from trainer.worker import TrainerWorker

TINY = "anvil/tiny-qwen3"


def _data(seed: int, lengths: list[int]) -> list[TrainDatum]:
    rng = np.random.default_rng(seed)
    data = []
    for n in lengths:
        tokens = rng.integers(5, 1000, size=n + 1)
        weights = rng.normal(size=n).astype(np.float32)  # signed weights, as custom losses send
        data.append(TrainDatum(tokens[:-1], {"target_tokens": tokens[1:], "weights": weights}))
    return data


def _grads(worker: TrainerWorker, model_id: str) -> dict[str, torch.Tensor]:
    adapter = worker.models[model_id].adapter
    return {f"{path}.{name}": getattr(w, name).grad.clone() for path, w in adapter.weights.items() for name in ("lora_A", "lora_B")}


# (loss rtol, logprob atol, gradient rtol, gradient atol as a fraction of the largest gradient):
# float32 agrees to rounding; bf16 base weights round every matmul to 8 significant bits, and a
# padded batch has other matmul shapes than one row alone, so the two round differently
TOLERANCES = {"fp32": (1e-5, 1e-5, 1e-3, 1e-4), "bf16": (2e-2, 0.1, 0.2, 0.05)}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mixed_batch_gradients_equal_single_adapter_gradients(registry, precision):
    loss_rtol, lp_atol, grad_rtol, grad_atol = TOLERANCES[precision]
    specs = {
        "a": LoraSpec(rank=8, seed=1),
        "b": LoraSpec(rank=4, seed=2, train_unembed=False),  # other rank, other targets
        "c": LoraSpec(rank=16, seed=3, train_attn=False),
    }
    work = {
        "a": ForwardBackwardWork(_data(10, [7, 12]), "cross_entropy", {}, False),
        "b": ForwardBackwardWork(_data(11, [20]), "cross_entropy", {}, False),
        "c": ForwardBackwardWork(_data(12, [3, 9, 15]), "cross_entropy", {}, False),
    }
    mixed, alone = TrainerWorker(registry, precision), TrainerWorker(registry, precision)
    for model_id, spec in specs.items():
        mixed.create_model(model_id, TINY, spec)
        alone.create_model(model_id, TINY, spec)
    # adapters start with B = 0, which hides the A gradients; give each B a nonzero value
    for worker in (mixed, alone):
        for model_id in specs:
            generator = torch.Generator().manual_seed(hash(model_id) % 1000)
            for w in worker.models[model_id].adapter.weights.values():
                w.lora_B.data = torch.randn(w.lora_B.shape, generator=generator) * 0.01

    assert len(mixed.hosts) == 1, "adapters on one base model share one copy of its weights"
    mixed_results = mixed.forward_backward(list(work.items()))
    for (model_id, w), mixed_result in zip(work.items(), mixed_results, strict=True):
        (alone_result,) = alone.forward_backward([(model_id, w)])
        np.testing.assert_allclose(mixed_result.metrics["loss:sum"], alone_result.metrics["loss:sum"], rtol=loss_rtol)
        for x, y in zip(mixed_result.logprobs, alone_result.logprobs, strict=True):
            np.testing.assert_allclose(x, y, atol=lp_atol)
        g_mixed, g_alone = _grads(mixed, model_id), _grads(alone, model_id)
        assert g_mixed.keys() == g_alone.keys()
        for key in g_mixed:
            scale = float(g_alone[key].abs().max())
            assert scale > 0, key
            # equal up to rounding: padding changes matmul shapes, not the math
            torch.testing.assert_close(g_mixed[key], g_alone[key], rtol=grad_rtol, atol=grad_atol * scale)


def test_forward_only_work_in_a_mixed_batch_leaves_no_gradient(registry):
    worker = TrainerWorker(registry)
    worker.create_model("train", TINY, LoraSpec(rank=4, seed=1))
    worker.create_model("look", TINY, LoraSpec(rank=4, seed=2))
    worker.forward_backward([
        ("train", ForwardBackwardWork(_data(1, [8]), "cross_entropy", {}, False)),
        ("look", ForwardBackwardWork(_data(2, [8]), "cross_entropy", {}, True)),
    ])
    assert all(p.grad is not None for p in worker.models["train"].adapter.parameters())
    assert all(p.grad is None for p in worker.models["look"].adapter.parameters())


def test_rows_of_very_different_lengths_run_in_length_groups_with_the_same_results(registry, monkeypatch):
    from trainer import length_buckets

    specs = {"a": LoraSpec(rank=8, seed=1), "b": LoraSpec(rank=4, seed=2, train_attn=False)}
    # a and b each have a short and a long row: two length groups, each mixing both adapters
    work = {
        "a": ForwardBackwardWork(_data(20, [10, 150]), "cross_entropy", {}, False),
        "b": ForwardBackwardWork(_data(21, [140, 12]), "cross_entropy", {}, False),
    }
    grouped, padded = TrainerWorker(registry, "fp32"), TrainerWorker(registry, "fp32")
    for worker in (grouped, padded):
        for model_id, spec in specs.items():
            worker.create_model(model_id, TINY, spec)
            generator = torch.Generator().manual_seed(7)
            for w in worker.models[model_id].adapter.weights.values():
                w.lora_B.data = torch.randn(w.lora_B.shape, generator=generator) * 0.01
    passes = []
    grouped.hosts[next(iter(grouped.hosts))].model.model.register_forward_hook(lambda m, a, out: passes.append(1))
    grouped_results = grouped.forward_backward(list(work.items()))
    assert len(passes) == 2, "the short rows and the long rows run as two base-model passes"
    monkeypatch.setattr(length_buckets, "MIN_PADDING_SAVED", 10**9)  # one pass, padded to 150
    padded_results = padded.forward_backward(list(work.items()))
    for model_id, a, b in zip(work, grouped_results, padded_results, strict=True):
        for x, y in zip(a.logprobs, b.logprobs, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-5)
        g_grouped, g_padded = _grads(grouped, model_id), _grads(padded, model_id)
        for key in g_grouped:
            torch.testing.assert_close(g_grouped[key], g_padded[key], rtol=1e-3, atol=1e-4 * float(g_padded[key].abs().max()))


def test_length_buckets_split_only_where_padding_is_large():
    from trainer.length_buckets import length_buckets

    assert length_buckets([5, 20, 7]) == [[0, 1, 2]], "short rows never split: the saving is too small"
    assert length_buckets([400, 20, 390, 30]) == [[0, 2], [1, 3]]
    assert length_buckets([1000, 800, 500, 300]) == [[0, 1], [2], [3]]
