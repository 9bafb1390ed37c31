"""Sampling through the official SDK: determinism, logprob parity with the trainer, stops."""

import asyncio

import numpy as np
import pytest
from tinker import types

from sdk_helpers import PRECISIONS, SAMPLER_PARITY_ATOL, TINY, logprobs_of, new_trainer, sft_datum

PROMPT_TEXT = "The capital of France is"


@pytest.fixture(scope="module")
def trained(service_client, tokenizer):
    """A briefly trained model and a sampling client on its current weights."""
    return _train(service_client, tokenizer)


@pytest.fixture(scope="module")
def trained_bf16(bf16_service_client, tokenizer):
    """The same, on the server running at bf16 base precision."""
    return _train(bf16_service_client, tokenizer)


@pytest.fixture
def trained_at(request):
    return lambda precision: request.getfixturevalue({"fp32": "trained", "bf16": "trained_bf16"}[precision])


def _train(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=8, seed=21)
    data = [sft_datum(tokenizer.encode(t)) for t in ["The capital of France is Paris.", "Two plus two is four."]]
    for _ in range(3):
        trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=5e-3))
    sampler = trainer.save_weights_and_get_sampling_client().result()
    return trainer, sampler


def _prompt(tokenizer) -> types.ModelInput:
    return types.ModelInput.from_ints(tokenizer.encode(PROMPT_TEXT))


def test_same_seed_same_tokens(trained, tokenizer):
    _, sampler = trained
    params = types.SamplingParams(max_tokens=12, seed=7, temperature=1.0)
    a = sampler.sample(_prompt(tokenizer), num_samples=3, sampling_params=params).result()
    b = sampler.sample(_prompt(tokenizer), num_samples=3, sampling_params=params).result()
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
    assert len({tuple(s.tokens) for s in a.sequences}) > 1, "the samples of one request should differ"
    other = sampler.sample(_prompt(tokenizer), num_samples=3, sampling_params=types.SamplingParams(max_tokens=12, seed=8)).result()
    assert [s.tokens for s in other.sequences] != [s.tokens for s in a.sequences]
    assert all(s.sequence_id for s in a.sequences)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_sampled_logprobs_equal_trainer_logprobs(trained_at, precision, tokenizer):
    trainer, sampler = trained_at(precision)
    prompt = tokenizer.encode(PROMPT_TEXT)
    result = sampler.sample(
        types.ModelInput.from_ints(prompt), num_samples=2, sampling_params=types.SamplingParams(max_tokens=10, seed=3)
    ).result()
    for seq in result.sequences:
        assert seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens)
        full = prompt + list(seq.tokens)
        (lp,) = logprobs_of(trainer.forward([sft_datum(full)], "cross_entropy").result())
        np.testing.assert_allclose(seq.logprobs, lp[len(prompt) - 1 :], atol=SAMPLER_PARITY_ATOL[precision])


def test_logprobs_are_temperature_scaled(trained, tokenizer):
    trainer, sampler = trained
    prompt = tokenizer.encode(PROMPT_TEXT)
    result = sampler.sample(
        types.ModelInput.from_ints(prompt), num_samples=1, sampling_params=types.SamplingParams(max_tokens=1, seed=5, temperature=0.5)
    ).result()
    token, reported = result.sequences[0].tokens[0], result.sequences[0].logprobs[0]
    # log softmax(z / T)[token], from the base-temperature logprobs of every token
    all_lp = sampler.sample(
        types.ModelInput.from_ints(prompt + [token]), num_samples=1, sampling_params=types.SamplingParams(max_tokens=1),
        include_prompt_logprobs=True, topk_prompt_logprobs=1024,
    ).result().topk_prompt_logprobs[-1]
    logits = {tid: lp for tid, lp in all_lp}  # log-probs at T=1 are logits up to a constant
    scaled = {tid: lp / 0.5 for tid, lp in logits.items()}
    log_z = np.log(np.sum(np.exp(list(scaled.values()))))
    np.testing.assert_allclose(reported, scaled[token] - log_z, atol=1e-3)


def test_top_k_and_top_p_truncate_the_distribution(trained, tokenizer):
    _, sampler = trained
    greedy = sampler.sample(_prompt(tokenizer), 1, types.SamplingParams(max_tokens=10, temperature=0.0, stop=[])).result()
    expected = list(greedy.sequences[0].tokens)
    # top_k = 1 and a tiny top_p both leave only the likeliest token, whatever the seed
    for params in (dict(top_k=1), dict(top_p=1e-6)):
        result = sampler.sample(_prompt(tokenizer), 4, types.SamplingParams(max_tokens=10, seed=11, stop=[], **params)).result()
        assert all(list(s.tokens) == expected for s in result.sequences), params
    # top_k = 2 only ever picks one of the two likeliest tokens at the first position
    prompt = tokenizer.encode(PROMPT_TEXT)
    first = sampler.sample(
        types.ModelInput.from_ints(prompt + [expected[0]]), 1, types.SamplingParams(max_tokens=1),
        topk_prompt_logprobs=2,
    ).result().topk_prompt_logprobs[len(prompt)]
    top_two = {token for token, _ in first}
    wide = sampler.sample(_prompt(tokenizer), 32, types.SamplingParams(max_tokens=1, seed=12, top_k=2, temperature=2.0)).result()
    picked = {s.tokens[0] for s in wide.sequences}
    assert picked <= top_two and len(picked) == 2


def test_stop_strings_end_the_sequence_and_are_included(trained, tokenizer):
    _, sampler = trained
    free = sampler.sample(_prompt(tokenizer), num_samples=1, sampling_params=types.SamplingParams(max_tokens=20, seed=9, stop=[])).result()
    text = tokenizer.decode(free.sequences[0].tokens)
    assert len(text) > 2
    stop = text[len(text) // 2 : len(text) // 2 + 1] if text[len(text) // 2].strip() else text[-1]
    stopped = sampler.sample(_prompt(tokenizer), num_samples=1, sampling_params=types.SamplingParams(max_tokens=20, seed=9, stop=[stop])).result()
    seq = stopped.sequences[0]
    out = tokenizer.decode(seq.tokens)
    assert seq.stop_reason == "stop"
    assert stop in out and stop not in tokenizer.decode(seq.tokens[:-1])
    assert list(seq.tokens) == list(free.sequences[0].tokens[: len(seq.tokens)])


def test_stop_tokens_end_the_sequence_and_are_included(trained, tokenizer):
    _, sampler = trained
    free = sampler.sample(_prompt(tokenizer), num_samples=1, sampling_params=types.SamplingParams(max_tokens=20, seed=4, stop=[])).result()
    tokens = list(free.sequences[0].tokens)
    assert free.sequences[0].stop_reason == "length" and len(tokens) == 20
    stop_token = tokens[5]
    first = tokens.index(stop_token)
    stopped = sampler.sample(_prompt(tokenizer), num_samples=1, sampling_params=types.SamplingParams(max_tokens=20, seed=4, stop=[stop_token])).result()
    assert list(stopped.sequences[0].tokens) == tokens[: first + 1]
    assert stopped.sequences[0].stop_reason == "stop"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_compute_logprobs_equals_forward(trained_at, precision, tokenizer):
    trainer, sampler = trained_at(precision)
    tokens = tokenizer.encode("Two plus two is four.")
    computed = sampler.compute_logprobs(types.ModelInput.from_ints(tokens)).result()
    assert computed[0] is None and len(computed) == len(tokens)
    (lp,) = logprobs_of(trainer.forward([sft_datum(tokens)], "cross_entropy").result())
    np.testing.assert_allclose(computed[1:], lp, atol=SAMPLER_PARITY_ATOL[precision])


def test_prompt_logprobs_and_topk(trained, tokenizer):
    _, sampler = trained
    tokens = tokenizer.encode("Two plus two is four.")
    result = sampler.sample(
        types.ModelInput.from_ints(tokens), num_samples=1, sampling_params=types.SamplingParams(max_tokens=2, seed=1),
        include_prompt_logprobs=True, topk_prompt_logprobs=3,
    ).result()
    assert result.prompt_logprobs[0] is None and len(result.prompt_logprobs) == len(tokens)
    top = result.topk_prompt_logprobs
    assert top[0] is None and len(top) == len(tokens)
    for position in range(1, len(tokens)):
        values = [lp for _, lp in top[position]]
        assert len(values) == 3 and values == sorted(values, reverse=True)
        # the actual next token can be no likelier than the top candidate
        assert result.prompt_logprobs[position] <= values[0] + 1e-6


def test_sampling_clients_from_path_and_base_model(service_client, trained, tokenizer):
    trainer, sampler = trained
    path = trainer.save_weights_for_sampler("for-sampling").result().path
    by_path = service_client.create_sampling_client(model_path=path).result()
    assert by_path.get_base_model() == TINY
    params = types.SamplingParams(max_tokens=8, seed=2)
    a = by_path.sample(_prompt(tokenizer), num_samples=1, sampling_params=params).result()
    b = sampler.sample(_prompt(tokenizer), num_samples=1, sampling_params=params).result()
    assert a.sequences[0].tokens == b.sequences[0].tokens
    base = service_client.create_sampling_client(base_model=TINY).result()
    c = base.sample(_prompt(tokenizer), num_samples=1, sampling_params=params).result()
    assert len(c.sequences[0].tokens) >= 1
    base_lp = base.compute_logprobs(types.ModelInput.from_ints(tokenizer.encode("Two plus two is four."))).result()
    tuned_lp = sampler.compute_logprobs(types.ModelInput.from_ints(tokenizer.encode("Two plus two is four."))).result()
    assert base_lp[1:] != tuned_lp[1:], "the base model and the trained adapter must differ"


@pytest.mark.filterwarnings("ignore:DEPRECATED:FutureWarning")  # the _async forms are what is tested
def test_async_forms(service_client, tokenizer):
    async def run():
        trainer = await service_client.create_lora_training_client_async(base_model=TINY, rank=4, seed=22)
        data = [sft_datum(tokenizer.encode("Two plus two is four."))]
        fwdbwd = await trainer.forward_backward_async(data, "cross_entropy")
        step = await trainer.optim_step_async(types.AdamParams(learning_rate=1e-3))
        out = await fwdbwd
        await step
        saved = await (await trainer.save_state_async("async"))
        sampler = await trainer.save_weights_and_get_sampling_client_async()
        sample = await sampler.sample_async(_prompt(tokenizer), num_samples=2, sampling_params=types.SamplingParams(max_tokens=4, seed=1))
        return out, saved, sample

    out, saved, sample = asyncio.run(run())
    assert out.metrics["loss:sum"] > 0
    assert saved.path.endswith("/weights/async")
    assert len(sample.sequences) == 2


def test_old_unnamed_sampler_saves_are_dropped_with_a_clear_error(service_client, tokenizer):
    import tinker

    from gateway.service import KEPT_EPHEMERAL_SAVES

    trainer = new_trainer(service_client, rank=4, seed=23)
    samplers = [trainer.save_weights_and_get_sampling_client().result() for _ in range(KEPT_EPHEMERAL_SAVES + 1)]
    params = types.SamplingParams(max_tokens=2, seed=0)
    with pytest.raises(tinker.NotFoundError, match="unnamed save older"):
        samplers[0].sample(_prompt(tokenizer), 1, params).result()
    assert len(samplers[-1].sample(_prompt(tokenizer), 1, params).result().sequences) == 1
    assert len(samplers[1].sample(_prompt(tokenizer), 1, params).result().sequences) == 1


def test_resaving_a_named_sampler_checkpoint_serves_the_new_weights(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=4, seed=24)
    tokens = tokenizer.encode("Two plus two is four.")
    path = trainer.save_weights_for_sampler("reused-name").result().path
    before = service_client.create_sampling_client(model_path=path).result().compute_logprobs(types.ModelInput.from_ints(tokens)).result()
    trainer.forward_backward([sft_datum(tokens)], "cross_entropy")
    trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    assert trainer.save_weights_for_sampler("reused-name").result().path == path
    after = service_client.create_sampling_client(model_path=path).result().compute_logprobs(types.ModelInput.from_ints(tokens)).result()
    (expected,) = logprobs_of(trainer.forward([sft_datum(tokens)], "cross_entropy").result())
    np.testing.assert_allclose(after[1:], expected, atol=1e-3)
    assert np.abs(np.array(after[1:]) - np.array(before[1:])).max() > 1e-3
