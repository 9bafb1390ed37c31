"""Model folders saved by transformers 4.x and by 5.x both train and sample through the SDK.

Both folders hold the real Qwen3 tokenizer (151,669 tokens) around a tiny random model with tied
embeddings. A base-model sample and an adapter without an lm_head LoRA are served by the fleet's
engine (vLLM where installed); an adapter with one on a tied model cannot be merged into vLLM's
weights exactly, so the fleet serves it with the torch engine: both paths are checked against the
trainer's own logprobs.
"""

import json

import numpy as np
import pytest
import tinker
from tinker import types

from gateway.local_server import AnvilServer
from model_folders import QWEN3, build_4x_folder, build_5x_folder
from sdk_helpers import API_KEY, SAMPLER_ENGINE, logprobs_of, sft_datum

pytestmark = pytest.mark.skipif(not QWEN3.is_dir(), reason=f"the real Qwen3 tokenizer files are not at {QWEN3}")

CHAT = [{"role": "user", "content": "What is two plus two?"}, {"role": "assistant", "content": "Four."}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    tf4 = build_4x_folder(root / "qwen3-tf4")
    tf5 = build_5x_folder(tf4, root / "qwen3-tf5")
    # the shape transformers 4.x could not read ('list' object has no attribute 'keys')
    assert isinstance(json.loads((tf5 / "tokenizer_config.json").read_text())["extra_special_tokens"], list)
    assert "extra_special_tokens" not in json.loads((tf4 / "tokenizer_config.json").read_text())
    server = AnvilServer(
        root / "data", extra_models={"qwen3-tf4": tf4, "qwen3-tf5": tf5}, args=["--sampler-engine", SAMPLER_ENGINE]
    )
    client = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
    yield client
    server.stop()


@pytest.mark.parametrize("model", ["qwen3-tf4", "qwen3-tf5"])
@pytest.mark.parametrize("train_unembed", [False, True])
def test_folder_trains_and_samples(client, model, train_unembed):
    trainer = client.create_lora_training_client(base_model=model, rank=4, seed=1, train_unembed=train_unembed).result()
    tokenizer = trainer.get_tokenizer()
    tokens = tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=False)
    assert tokenizer.convert_ids_to_tokens(tokens[0]) == "<|im_start|>"
    datum = sft_datum(list(tokens))
    first = trainer.forward_backward([datum], "cross_entropy").result().metrics["loss:sum"]
    trainer.optim_step(types.AdamParams(learning_rate=2e-2)).result()
    for _ in range(3):
        trainer.forward_backward([datum], "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=2e-2))
    last = trainer.forward_backward([datum], "cross_entropy").result().metrics["loss:sum"]
    assert last < first

    prompt = list(tokenizer.apply_chat_template(CHAT[:1], tokenize=True, add_generation_prompt=True, return_dict=False))
    base = client.create_sampling_client(base_model=model)
    tuned = trainer.save_weights_and_get_sampling_client().result()
    params = types.SamplingParams(max_tokens=6, seed=0, temperature=1.0, stop=[])  # no stop: 6 tokens each
    for sampler in (base, tuned):
        result = sampler.sample(types.ModelInput.from_ints(prompt), num_samples=2, sampling_params=params).result()
        for seq in result.sequences:
            assert len(seq.tokens) == 6 and len(seq.logprobs) == 6
            assert all(0 <= t < 151_936 for t in seq.tokens)
        if sampler is tuned:
            seq = result.sequences[0]
            (expected,) = logprobs_of(trainer.forward([sft_datum(prompt + list(seq.tokens))], "cross_entropy").result())
            np.testing.assert_allclose(seq.logprobs, expected[len(prompt) - 1 :], atol=2e-3)
