"""Supervised training through the official SDK: memorisation, weights, (N, K) targets, custom losses."""

import numpy as np
import torch
from tinker import types

from sdk_helpers import TINY, logprobs_of, new_trainer, sft_datum

TEXTS = [
    "The capital of France is Paris.",
    "Two plus two is four.",
    "The sea is wide, the sea is deep.",
    "Sorted, they are 1, 3, 5, 9.",
]


def test_capabilities_and_info(service_client, rest_client, tokenizer):
    names = [m.model_name for m in rest_client.get_server_capabilities().result().supported_models]
    assert TINY in names and "Qwen/Qwen3-8B" in names
    trainer = new_trainer(service_client, rank=4, train_mlp=False)
    info = trainer.get_info()
    assert info.model_data.model_name == TINY
    assert info.model_id.split(":")[1:] == ["train", info.model_id.split(":")[2]]
    assert info.lora_rank == 4
    # the tokenizer the SDK loads from tokenizer_id is the model's own: chat tokens are single ids
    assert len(tokenizer.encode("<|im_start|>")) == 1


def test_supervised_loop_memorises(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=16, seed=1)
    data = [sft_datum(tokenizer.encode(t)) for t in TEXTS]
    losses = []
    for _ in range(30):
        fwdbwd = trainer.forward_backward(data, "cross_entropy")
        step = trainer.optim_step(types.AdamParams(learning_rate=5e-3))
        losses.append(fwdbwd.result().metrics["loss:sum"])
        step.result()
    assert losses[-1] <= 0.1 * losses[0], losses


def test_forward_logprobs_and_loss_sum(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=4, seed=2)
    tokens = tokenizer.encode(TEXTS[0])
    weights = [0.5, -1.25, 0.0, 2.0] + [0.25] * (len(tokens) - 5)
    out = trainer.forward([sft_datum(tokens, weights)], "cross_entropy").result()
    (lp,) = logprobs_of(out)
    assert lp.shape == (len(tokens) - 1,)
    assert np.all(lp < 0)
    # loss:sum is -Σ w·lp with the signed, fractional weights as sent
    np.testing.assert_allclose(out.metrics["loss:sum"], -np.dot(weights, lp), rtol=1e-5)


def test_forward_does_not_change_weights_or_accumulate(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=4, seed=3)
    datum = sft_datum(tokenizer.encode(TEXTS[1]))
    before = logprobs_of(trainer.forward([datum], "cross_entropy").result())[0]
    trainer.forward([datum], "cross_entropy").result()
    trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    after = logprobs_of(trainer.forward([datum], "cross_entropy").result())[0]
    np.testing.assert_array_equal(before, after)


def test_topk_targets_n_by_k(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=4, seed=4)
    tokens = tokenizer.encode(TEXTS[2])
    n = len(tokens) - 1
    plain = logprobs_of(trainer.forward([sft_datum(tokens)], "cross_entropy").result())[0]
    targets = np.stack([np.asarray(tokens[1:]), np.arange(n) + 7, np.arange(n) + 11], axis=1).astype(np.int64)
    weights = np.zeros((n, 3), dtype=np.float32)
    weights[:, 0] = 1.0
    weights[::2, 1] = -0.5
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        # torch tensors: the SDK sends sparse 2-D inputs as CSR
        loss_fn_inputs={"target_tokens": torch.from_numpy(targets), "weights": torch.from_numpy(weights)},
    )
    out = trainer.forward([datum], "cross_entropy").result()
    (lp,) = logprobs_of(out)
    assert lp.shape == (n, 3)
    np.testing.assert_allclose(lp[:, 0], plain, atol=1e-5)
    np.testing.assert_allclose(out.metrics["loss:sum"], -(weights * lp).sum(), rtol=1e-5)


def test_gradients_accumulate_until_optim_step(service_client, tokenizer):
    """Two forward_backward calls on halves then one step == one call on the whole, then one step."""
    data = [sft_datum(tokenizer.encode(t)) for t in TEXTS]
    split = new_trainer(service_client, rank=4, seed=5)
    whole = new_trainer(service_client, rank=4, seed=5)
    split.forward_backward(data[:2], "cross_entropy")
    split.forward_backward(data[2:], "cross_entropy")
    split.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    whole.forward_backward(data, "cross_entropy")
    whole.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    a = logprobs_of(split.forward(data, "cross_entropy").result())
    b = logprobs_of(whole.forward(data, "cross_entropy").result())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_forward_backward_custom_matches_cross_entropy(service_client, tokenizer):
    data = [sft_datum(tokenizer.encode(t)) for t in TEXTS[:2]]
    custom = new_trainer(service_client, rank=4, seed=6)
    builtin = new_trainer(service_client, rank=4, seed=6)

    def nll(batch, logprobs_list):
        loss = sum(-(lp * torch.tensor(d.loss_fn_inputs["weights"].data)).sum() for d, lp in zip(batch, logprobs_list))
        return loss, {"nll:sum": float(loss.detach())}

    result = custom.forward_backward_custom(data, nll).result()
    reference = builtin.forward_backward(data, "cross_entropy").result()
    np.testing.assert_allclose(result.metrics["loss:sum"], reference.metrics["loss:sum"], rtol=1e-5)
    custom.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    builtin.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    a = logprobs_of(custom.forward(data, "cross_entropy").result())
    b = logprobs_of(builtin.forward(data, "cross_entropy").result())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_base_model_given_as_a_local_folder(service_client, tokenizer, anvil_server):
    from gateway.local_server import tiny_model_folder

    folder = str(tiny_model_folder(anvil_server.data_dir))
    trainer = service_client.create_lora_training_client(base_model=folder, rank=4, seed=0).result()
    assert trainer.get_info().model_data.model_name == folder
    out = trainer.forward([sft_datum(tokenizer.encode(TEXTS[0]))], "cross_entropy").result()
    assert out.metrics["loss:sum"] > 0


def test_model_flag_serves_a_real_model_id(service_client, tokenizer):
    trainer = service_client.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=4, seed=0).result()
    assert trainer.get_info().model_data.model_name == "Qwen/Qwen3-8B"
    out = trainer.forward([sft_datum(tokenizer.encode(TEXTS[0]))], "cross_entropy").result()
    assert out.metrics["loss:sum"] > 0


def test_large_request_split_into_chunks_by_the_sdk(service_client):
    """Over 1024 datums the SDK sends several requests with consecutive seq_ids; the results come
    back whole and in datum order."""
    trainer = new_trainer(service_client, rank=4, seed=7)
    data = [sft_datum([5 + i % 900, 6 + i % 900, 7 + i % 900]) for i in range(1100)]
    out = trainer.forward(data, "cross_entropy").result()
    lps = logprobs_of(out)
    assert len(lps) == 1100 and all(lp.shape == (2,) for lp in lps)
    np.testing.assert_allclose(out.metrics["loss:sum"], -sum(float(lp.sum()) for lp in lps), rtol=1e-4)
    # datum order is kept across chunks: datum 1050 (second chunk) repeats datum 150 (first chunk)
    np.testing.assert_allclose(lps[1050], lps[150], atol=1e-6)
    assert np.abs(lps[1050] - lps[151]).max() > 1e-4
