"""save_state / load_state / create-from-state, sampler weights in PEFT format, and listing."""

import time

import numpy as np
import pytest
import torch
from tinker import types

from anvil.checkpoint_folders import latest_version, named_folder
from sdk_helpers import PRECISIONS, TINY, logprobs_of, new_trainer, sft_datum

TEXTS = ["The capital of France is Paris.", "Two plus two is four.", "One, two, three, four, five."]
ADAM = types.AdamParams(learning_rate=5e-3, weight_decay=0.01, grad_clip_norm=1.0)


def _step(trainer, data) -> float:
    fwdbwd = trainer.forward_backward(data, "cross_entropy")
    trainer.optim_step(ADAM).result()
    return fwdbwd.result().metrics["loss:sum"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_resume_with_optimizer_is_exact(client_at, precision, tokenizer):
    # exact at both precisions: the resumed model runs the same computation on the same weights
    service_client = client_at(precision)
    data = [sft_datum(tokenizer.encode(t)) for t in TEXTS]
    straight = new_trainer(service_client, rank=8, seed=11)
    paused = new_trainer(service_client, rank=8, seed=11)
    for _ in range(3):
        _step(straight, data)
        _step(paused, data)
    path = paused.save_state("resume-3").result().path
    assert path == f"tinker://{paused.model_id}/weights/resume-3"
    resumed = service_client.create_training_client_from_state_with_optimizer(path).result()
    assert resumed.model_id != paused.model_id
    assert resumed.get_info().model_data.model_name == TINY

    loss_straight, loss_resumed = _step(straight, data), _step(resumed, data)
    np.testing.assert_allclose(loss_resumed, loss_straight, rtol=0, atol=1e-5)
    for a, b in zip(
        logprobs_of(straight.forward(data, "cross_entropy").result()),
        logprobs_of(resumed.forward(data, "cross_entropy").result()),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_resume_without_optimizer_restarts_adam(service_client, tokenizer):
    data = [sft_datum(tokenizer.encode(t)) for t in TEXTS]
    trainer = new_trainer(service_client, rank=8, seed=12)
    for _ in range(2):
        _step(trainer, data)
    path = trainer.save_state("no-opt").result().path
    weights_only = service_client.create_training_client_from_state(path).result()
    with_opt = service_client.create_training_client_from_state_with_optimizer(path).result()
    # same weights now...
    np.testing.assert_allclose(
        logprobs_of(weights_only.forward(data, "cross_entropy").result())[0],
        logprobs_of(with_opt.forward(data, "cross_entropy").result())[0],
        atol=1e-6,
    )
    # ...but a fresh Adam state takes a different first step than the restored one
    _step(weights_only, data)
    _step(with_opt, data)
    a = logprobs_of(weights_only.forward(data, "cross_entropy").result())[0]
    b = logprobs_of(with_opt.forward(data, "cross_entropy").result())[0]
    assert np.abs(a - b).max() > 1e-4


@pytest.mark.filterwarnings("ignore:DEPRECATED:FutureWarning")  # the deprecated calls are what is tested
def test_legacy_load_state_on_existing_client(service_client, tokenizer):
    data = [sft_datum(tokenizer.encode(t)) for t in TEXTS]
    trainer = new_trainer(service_client, rank=8, seed=13)
    _step(trainer, data)
    path = trainer.save_state("legacy").result().path
    saved = logprobs_of(trainer.forward(data, "cross_entropy").result())[0]
    _step(trainer, data)
    moved = logprobs_of(trainer.forward(data, "cross_entropy").result())[0]
    assert np.abs(saved - moved).max() > 1e-4
    trainer.load_state(path).result()
    np.testing.assert_allclose(logprobs_of(trainer.forward(data, "cross_entropy").result())[0], saved, atol=1e-6)
    trainer.load_state_with_optimizer(path).result()
    np.testing.assert_allclose(logprobs_of(trainer.forward(data, "cross_entropy").result())[0], saved, atol=1e-6)


def test_sampler_checkpoint_loads_in_peft_with_same_logprobs(service_client, tokenizer, anvil_server):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = [sft_datum(tokenizer.encode(t)) for t in TEXTS]
    trainer = new_trainer(service_client, rank=8, seed=14)
    for _ in range(3):
        _step(trainer, data)
    path = trainer.save_weights_for_sampler("peft-check").result().path
    assert path == f"tinker://{trainer.model_id}/sampler_weights/peft-check"
    ours = logprobs_of(trainer.forward(data, "cross_entropy").result())

    folder = latest_version(named_folder(anvil_server.data_dir, trainer.model_id, "sampler_weights", "peft-check"))
    base = AutoModelForCausalLM.from_pretrained(trainer.get_info().model_data.tokenizer_id, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, folder).eval()
    for datum, lp in zip(data, ours, strict=True):
        tokens = torch.tensor([datum.model_input.to_ints()])
        targets = torch.as_tensor(datum.loss_fn_inputs["target_tokens"].to_numpy())
        with torch.no_grad():
            logits = peft_model(input_ids=tokens).logits[0].float()
        reference = torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0].numpy()
        np.testing.assert_allclose(lp, reference, atol=1e-5)


def test_rest_client_lists_runs_and_checkpoints(service_client, rest_client, tokenizer):
    trainer = new_trainer(service_client, rank=4, seed=15, user_metadata={"renderer": "qwen3"})
    _step(trainer, [sft_datum(tokenizer.encode(TEXTS[0]))])
    trainer.save_state("listed").result()
    trainer.save_weights_for_sampler("listed-sampler").result()
    rest = rest_client

    run = rest.get_training_run(trainer.model_id).result()
    assert run.base_model == TINY and run.lora_rank == 4 and run.is_lora
    assert run.user_metadata == {"renderer": "qwen3"}
    assert run.last_checkpoint.checkpoint_id == "weights/listed"
    assert run.last_sampler_checkpoint.checkpoint_id == "sampler_weights/listed-sampler"

    ids = {c.checkpoint_id: c for c in rest.list_checkpoints(trainer.model_id).result().checkpoints}
    assert set(ids) == {"weights/listed", "sampler_weights/listed-sampler"}
    assert ids["weights/listed"].checkpoint_type == "training"
    assert ids["sampler_weights/listed-sampler"].checkpoint_type == "sampler"
    assert all(c.size_bytes > 0 for c in ids.values())

    runs = rest.list_training_runs(limit=100).result()
    assert trainer.model_id in {r.training_run_id for r in runs.training_runs}
    mine = rest.list_user_checkpoints().result().checkpoints
    assert {"weights/listed", "sampler_weights/listed-sampler"} <= {c.checkpoint_id for c in mine if c.tinker_path.startswith(f"tinker://{trainer.model_id}/")}

    rest.delete_checkpoint(trainer.model_id, "weights/listed").result()
    remaining = [c.checkpoint_id for c in rest.list_checkpoints(trainer.model_id).result().checkpoints]
    assert remaining == ["sampler_weights/listed-sampler"]


@pytest.mark.filterwarnings("ignore:DEPRECATED:FutureWarning")  # load_state is deprecated, still served
def test_a_checkpoint_with_other_lora_targets_is_a_user_error(service_client, tokenizer):
    import tinker

    attn_only = new_trainer(service_client, rank=4, seed=17, train_mlp=False)
    path = attn_only.save_state("attn-only").result().path
    everything = new_trainer(service_client, rank=4, seed=18)
    with pytest.raises(tinker.RequestFailedError, match="does not fit.*train_mlp=False") as caught:
        everything.load_state(path).result()
    assert caught.value.category == "user"
    # the model is untouched and keeps training
    datum = sft_datum(tokenizer.encode(TEXTS[0]))
    assert everything.forward_backward([datum], "cross_entropy").result().metrics["loss:sum"] > 0
    everything.optim_step(ADAM).result()


def test_save_state_refuses_to_overwrite_by_default(service_client, tokenizer):
    import tinker

    trainer = new_trainer(service_client, rank=4, seed=16)
    trainer.save_state("twice").result()
    with pytest.raises(tinker.RequestFailedError, match="exists"):
        trainer.save_state("twice").result()
    trainer.save_state("twice", overwrite=True).result()


def test_an_expired_checkpoint_is_gone_at_once_and_its_files_soon_after(service_client, rest_client, tokenizer, anvil_server):
    import tinker

    data = [sft_datum(tokenizer.encode(TEXTS[0]))]
    trainer = new_trainer(service_client, rank=4, seed=19)
    _step(trainer, data)
    sampler_path = trainer.save_weights_for_sampler("short-lived-sampler").result().path
    kept = trainer.save_state("kept").result().path
    sampler = service_client.create_sampling_client(model_path=sampler_path).result()
    prompt = types.ModelInput.from_ints(tokenizer.encode("Two plus"))
    sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2, seed=0)).result()
    # both ways of giving a TTL: at save time, and set on a saved checkpoint
    state = trainer.save_state("short-lived", ttl_seconds=3).result().path
    rest_client.set_checkpoint_ttl_from_tinker_path(sampler_path, 3).result()
    expiring = time.monotonic() + 3
    listed = {c.tinker_path: c for c in rest_client.list_checkpoints(trainer.model_id).result().checkpoints}
    assert set(listed) == {state, sampler_path, kept}
    assert listed[state].expires_at is not None and listed[kept].expires_at is None

    time.sleep(max(expiring - time.monotonic(), 0) + 0.5)
    # expired: unlisted and unloadable right away, whether or not the sweep has run
    assert [c.tinker_path for c in rest_client.list_checkpoints(trainer.model_id).result().checkpoints] == [kept]
    assert kept in {c.tinker_path for c in rest_client.list_user_checkpoints(limit=1000).result().checkpoints}
    assert state not in {c.tinker_path for c in rest_client.list_user_checkpoints(limit=1000).result().checkpoints}
    with pytest.raises(tinker.NotFoundError, match="not found"):
        service_client.create_training_client_from_state(state).result()
    with pytest.raises(tinker.NotFoundError, match="not found"):
        service_client.create_sampling_client(model_path=sampler_path).result()
    with pytest.raises(tinker.NotFoundError, match="deleted or expired"):
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2, seed=0)).result()
    with pytest.raises(tinker.NotFoundError, match="not found"):
        rest_client.set_checkpoint_ttl_from_tinker_path(state, None).result()
    # a name whose checkpoint expired is free again
    again = trainer.save_state("short-lived").result().path
    assert again == state
    service_client.create_training_client_from_state(again).result().get_info()

    # the sweep removes the expired sampler checkpoint's files
    folder = named_folder(anvil_server.data_dir, trainer.model_id, "sampler_weights", "short-lived-sampler")
    deadline = time.monotonic() + 20
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not folder.exists()
    assert latest_version(named_folder(anvil_server.data_dir, trainer.model_id, "weights", "kept")) is not None
