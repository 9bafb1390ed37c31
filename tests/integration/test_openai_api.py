"""The OpenAI API (/v1) through the official `openai` client, on a checkpoint trained here through
the tinker SDK: chat, completions, streaming, tool calls, parity with the Tinker `sample` path,
and OpenAI-shaped errors."""

import json

import httpx
import numpy as np
import openai
import pytest
from tinker import types

from renderers import TrainOnWhat, datum_from_example, get_renderer
from sdk_helpers import ALIAS_MODEL, API_KEY, TINY, new_trainer

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "Paris is the capital."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_QUESTION = [{"role": "user", "content": "Weather in Lyon?"}]
TOOL_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}}


@pytest.fixture(scope="module")
def client(anvil_server):
    with openai.OpenAI(base_url=f"{anvil_server.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def renderer(tokenizer):
    return get_renderer("qwen3", tokenizer)


@pytest.fixture(scope="module")
def tuned(service_client, renderer):
    """(sampler checkpoint path, a Tinker sampling client on it): a few SFT steps on one fixed
    answer and one fixed tool call, rendered by the renderer the server picks for the tiny model."""
    trainer = new_trainer(service_client, rank=8, seed=41)
    examples = [
        renderer.build_supervised_example(QUESTION + [{"role": "assistant", "content": ANSWER}], TrainOnWhat.LAST_ASSISTANT_MESSAGE),
        renderer.build_supervised_example(
            TOOL_QUESTION + [{"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]}],
            TrainOnWhat.LAST_ASSISTANT_MESSAGE, tools=[WEATHER_TOOL],
        ),
    ]
    data = [datum_from_example(model_input, weights) for model_input, weights in examples]
    # enough for the random tiny model to learn both replies token for token (about 90 s)
    for _ in range(100):
        trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=5e-3))
    path = trainer.save_weights_for_sampler("openai-tuned").result().path
    return path, service_client.create_sampling_client(model_path=path).result()


def _ids(logprobs) -> list[int]:
    return [int(entry.token.removeprefix("token_id:")) for entry in logprobs]


def test_models_lists_base_models_and_own_checkpoints(client, anvil_server, tuned):
    path, _ = tuned
    ids = [model.id for model in client.models.list()]
    assert TINY in ids and ALIAS_MODEL in ids and path in ids
    assert client.models.retrieve(path).id == path
    with openai.OpenAI(base_url=f"{anvil_server.base_url}/v1", api_key="tml-someone-else", max_retries=0) as other:
        assert path not in [model.id for model in other.models.list()]
        with pytest.raises(openai.NotFoundError):
            other.models.retrieve(path)


def test_chat_on_the_checkpoint_answers_as_trained(client, tuned):
    path, _ = tuned
    tuned_reply = client.chat.completions.create(model=path, messages=QUESTION, temperature=0, max_tokens=24)
    choice = tuned_reply.choices[0]
    assert choice.message.content == ANSWER and choice.finish_reason == "stop"
    assert choice.message.role == "assistant" and choice.message.tool_calls is None
    base_reply = client.chat.completions.create(model=TINY, messages=QUESTION, temperature=0, max_tokens=24)
    assert base_reply.choices[0].message.content != ANSWER
    usage = tuned_reply.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens and usage.completion_tokens > 0


def test_chat_tokens_and_logprobs_equal_the_sample_path(client, tuned, renderer, tokenizer):
    path, sampler = tuned
    reply = client.chat.completions.create(
        model=path, messages=QUESTION, n=3, seed=5, temperature=1.0, max_tokens=12, logprobs=True, top_logprobs=3,
        extra_body={"return_tokens_as_token_ids": True},
    )
    prompt = renderer.build_generation_prompt(QUESTION).to_ints()
    params = types.SamplingParams(max_tokens=12, seed=5, temperature=1.0, stop=renderer.get_stop_sequences())
    expected = sampler.sample(types.ModelInput.from_ints(prompt), num_samples=3, sampling_params=params).result().sequences
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.usage.completion_tokens == sum(len(seq.tokens) for seq in expected)
    for choice, seq in zip(reply.choices, expected, strict=True):
        assert _ids(choice.logprobs.content) == list(seq.tokens)
        # the Tinker wire carries float32
        assert [np.float32(entry.logprob) for entry in choice.logprobs.content] == list(np.float32(seq.logprobs))
        parsed = renderer.parse_response(seq.tokens).message
        text = tokenizer.decode(list(seq.tokens), clean_up_tokenization_spaces=False)
        if text.count("</think>") > 1:
            # the content starts after the first </think> (docs/openai.md); the parser takes the last
            parsed = {"content": text.split("</think>", 1)[1].removesuffix("<|im_end|>").lstrip("\n")}
        assert choice.message.content == parsed["content"]
        assert choice.finish_reason == ("stop" if seq.stop_reason == "stop" else "length")
        # at temperature 1 the alternatives are the unscaled top 3, as prompt logprobs see them
        full = types.ModelInput.from_ints(prompt + list(seq.tokens))
        top = sampler.sample(full, 1, types.SamplingParams(max_tokens=1), topk_prompt_logprobs=3).result().topk_prompt_logprobs
        for position, entry in enumerate(choice.logprobs.content):
            want = top[len(prompt) + position]
            assert [int(alt.token.removeprefix("token_id:")) for alt in entry.top_logprobs] == [t for t, _ in want]
            np.testing.assert_allclose([alt.logprob for alt in entry.top_logprobs], [lp for _, lp in want], atol=1e-4)


def test_completions_tokens_and_logprobs_equal_the_sample_path(client, tuned, tokenizer):
    path, sampler = tuned
    text = "The capital of France is"
    prompt = tokenizer.encode(text)
    params = types.SamplingParams(max_tokens=10, seed=9, temperature=0.8)
    expected = sampler.sample(types.ModelInput.from_ints(prompt), 2, params).result().sequences
    for sent in (text, prompt):
        reply = client.completions.create(
            model=path, prompt=sent, n=2, seed=9, temperature=0.8, max_tokens=10, logprobs=2,
            extra_body={"return_tokens_as_token_ids": True},
        )
        for choice, seq in zip(reply.choices, expected, strict=True):
            tokens = [int(token.removeprefix("token_id:")) for token in choice.logprobs.tokens]
            assert tokens == list(seq.tokens)
            assert list(np.float32(choice.logprobs.token_logprobs)) == list(np.float32(seq.logprobs))
            assert all(len(top) == 2 for top in choice.logprobs.top_logprobs)
            body = list(seq.tokens)
            if seq.stop_reason == "stop":
                body = body[:-1]  # the end-of-sequence token is not text
            assert choice.text == tokenizer.decode(body, clean_up_tokenization_spaces=False)
        assert reply.usage.prompt_tokens == len(prompt)


def test_a_checkpoint_completes_differently_from_the_base_model(client, tuned, renderer, tokenizer):
    path, _ = tuned
    prompt = renderer.build_generation_prompt(QUESTION).to_ints()
    tuned_text = client.completions.create(model=path, prompt=prompt, temperature=0, max_tokens=24).choices[0].text
    base_text = client.completions.create(model=TINY, prompt=prompt, temperature=0, max_tokens=24).choices[0].text
    assert tuned_text.endswith(ANSWER) and base_text != tuned_text


def _collect_chat_stream(stream):
    contents, reasoning, finish, logprob_ids, tool_calls, chunks, usage = {}, {}, {}, {}, {}, 0, None
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            contents[choice.index] = contents.get(choice.index, "") + (choice.delta.content or "")
            extra = getattr(choice.delta, "reasoning_content", None) or ""
            reasoning[choice.index] = reasoning.get(choice.index, "") + extra
            if choice.logprobs is not None:
                logprob_ids.setdefault(choice.index, []).extend(_ids(choice.logprobs.content))
            for call in choice.delta.tool_calls or []:
                tool_calls.setdefault(choice.index, []).append((call.function.name, json.loads(call.function.arguments)))
            if choice.finish_reason is not None:
                finish[choice.index] = choice.finish_reason
    return contents, reasoning, finish, logprob_ids, tool_calls, chunks, usage


def test_a_streamed_chat_adds_up_to_the_whole_one(client, tuned):
    path, _ = tuned
    asked = dict(model=path, messages=QUESTION, n=2, seed=3, temperature=1.0, max_tokens=20, logprobs=True,
                 extra_body={"return_tokens_as_token_ids": True})
    whole = client.chat.completions.create(**asked)
    stream = client.chat.completions.create(**asked, stream=True, stream_options={"include_usage": True})
    contents, reasoning, finish, logprob_ids, _, chunks, usage = _collect_chat_stream(stream)
    for choice in whole.choices:
        assert contents[choice.index] == (choice.message.content or "")
        assert reasoning[choice.index] == (getattr(choice.message, "reasoning_content", None) or "")
        assert finish[choice.index] == choice.finish_reason
        assert logprob_ids[choice.index] == _ids(choice.logprobs.content)
    assert usage == whole.usage
    # token by token: a chunk per sampled token at most, and more than one per choice
    assert 2 * len(whole.choices) + 1 < chunks <= whole.usage.completion_tokens + len(whole.choices) + 1


def test_a_streamed_completion_adds_up_to_the_whole_one(client, tuned, tokenizer):
    path, _ = tuned
    asked = dict(model=path, prompt="Two plus two is", n=2, seed=8, temperature=1.0, max_tokens=16, stop=["e"])
    whole = client.completions.create(**asked)
    texts, finish = {}, {}
    for chunk in client.completions.create(**asked, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason is not None:
                finish[choice.index] = choice.finish_reason
    for choice in whole.choices:
        assert texts[choice.index] == choice.text and "e" not in choice.text
        assert finish[choice.index] == choice.finish_reason


def test_stop_strings_end_the_reply_and_are_left_out(client, tuned):
    path, _ = tuned
    reply = client.chat.completions.create(model=path, messages=QUESTION, temperature=0, max_tokens=24, stop=["capital"])
    assert reply.choices[0].message.content == "Paris is the "
    assert reply.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(model=path, messages=QUESTION, temperature=0, max_completion_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_tool_calls_in_and_out(client, tuned):
    path, _ = tuned
    asked = dict(model=path, messages=TOOL_QUESTION, tools=[WEATHER_TOOL], temperature=0, max_tokens=80)
    reply = client.chat.completions.create(**asked)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Lyon"}
    # streamed, the call arrives whole with its finish reason
    contents, _, finish, _, tool_calls, _, _ = _collect_chat_stream(client.chat.completions.create(**asked, stream=True))
    assert finish[0] == "tool_calls" and contents[0] == "" and tool_calls[0] == [("get_weather", {"city": "Lyon"})]
    # tool_choice "none": no tools shown, no call parsed
    plain = client.chat.completions.create(**{**asked, "tool_choice": "none"})
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].finish_reason in ("stop", "length")
    # the call and its result go back in, and the conversation goes on
    follow_up = TOOL_QUESTION + [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
    ]
    answer = client.chat.completions.create(model=path, messages=follow_up, tools=[WEATHER_TOOL], temperature=0, max_tokens=8)
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_a_request_may_name_its_renderer(client, tuned):
    path, _ = tuned
    default = client.chat.completions.create(model=path, messages=QUESTION, temperature=0, max_tokens=24)
    named = client.chat.completions.create(model=path, messages=QUESTION, temperature=0, max_tokens=24,
                                           extra_body={"renderer": "qwen3"})
    assert named.choices[0].message.content == default.choices[0].message.content == ANSWER
    other = client.chat.completions.create(model=path, messages=QUESTION, temperature=0, max_tokens=24,
                                           extra_body={"renderer": "role_colon"})
    assert other.usage.prompt_tokens != default.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError, match="unknown renderer 'nope'"):
        client.chat.completions.create(model=path, messages=QUESTION, extra_body={"renderer": "nope"})


def _error(excinfo) -> dict:
    return excinfo.value.body


@pytest.mark.parametrize(
    "asked, param",
    [
        (dict(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
        (dict(messages=[]), "messages"),
        (dict(messages=[{"role": "user"}]), "messages[0].content"),
        (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), "messages[0].content[0]"),
        (dict(n=0), "n"),
        (dict(n=-2), "n"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(temperature=-1), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(seed=2**70), "seed"),
        (dict(top_logprobs=3), "top_logprobs"),
        (dict(logprobs=True, top_logprobs=21), "top_logprobs"),
        (dict(presence_penalty=0.5), "presence_penalty"),
        (dict(logit_bias={"5": 1.0}), "logit_bias"),
        (dict(response_format={"type": "json_object"}), "response_format"),
        (dict(tool_choice="required", tools=[WEATHER_TOOL]), "tool_choice"),
        (dict(tools=[{"type": "function"}]), "tools[0]"),
        (dict(stop=[""]), "stop"),
        (dict(stream_options={"include_usage": True}), "stream_options"),
        (dict(extra_body={"frobnicate": 1}), "frobnicate"),
        (dict(extra_body={"reasoning_effort": "high"}), "reasoning_effort"),
        (dict(max_tokens=5000), "messages"),
        (dict(messages=[{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]),
         "messages[0].tool_calls[0].function.arguments"),
    ],
)
def test_bad_chat_requests_are_openai_400s(client, tuned, asked, param):
    path, _ = tuned
    asked = {"model": path, "messages": QUESTION, "max_tokens": 4, **asked}
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(**asked)
    error = _error(excinfo)
    assert excinfo.value.status_code == 400
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param, error


@pytest.mark.parametrize(
    "asked, param",
    [
        (dict(prompt=""), "prompt"),
        (dict(prompt=[]), "prompt"),
        (dict(prompt=[1, 1 << 20]), "prompt"),
        (dict(prompt=[[1, 2], []]), "prompt[1]"),
        (dict(echo=True), "echo"),
        (dict(best_of=3), "best_of"),
        (dict(suffix="x"), "suffix"),
        (dict(logprobs=21), "logprobs"),
        (dict(prompt=["a", "b"], stream=True), "prompt"),
        (dict(frequency_penalty=1.0), "frequency_penalty"),
    ],
)
def test_bad_completion_requests_are_openai_400s(client, asked, param):
    asked = {"model": TINY, "prompt": "Hello", "max_tokens": 4, **asked}
    with pytest.raises(openai.BadRequestError) as excinfo:
        result = client.completions.create(**asked)
        list(result) if asked.get("stream") else None
    assert _error(excinfo)["param"] == param


def test_unknown_and_unreadable_models_are_404s(client, anvil_server, tuned):
    path, _ = tuned
    for model in ("no/such-model", "tinker://sess-nope:train:0/sampler_weights/x", "tinker://nonsense"):
        with pytest.raises(openai.NotFoundError) as excinfo:
            client.chat.completions.create(model=model, messages=QUESTION, max_tokens=2)
        assert _error(excinfo)["code"] == "model_not_found" and _error(excinfo)["param"] == "model"
    with openai.OpenAI(base_url=f"{anvil_server.base_url}/v1", api_key="tml-someone-else", max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.chat.completions.create(model=path, messages=QUESTION, max_tokens=2)
        with pytest.raises(openai.NotFoundError):
            other.completions.create(model=path, prompt="Hi", max_tokens=2)


def test_a_published_checkpoint_is_served_to_everyone(anvil_server, service_client, rest_client):
    trainer = new_trainer(service_client, rank=4, seed=42)
    path = trainer.save_weights_for_sampler("openai-published").result().path
    rest_client.publish_checkpoint_from_tinker_path(path).result()
    with openai.OpenAI(base_url=f"{anvil_server.base_url}/v1", api_key="tml-someone-else", max_retries=0) as other:
        assert path in [model.id for model in other.models.list()]
        assert other.completions.create(model=path, prompt="Hi", max_tokens=2).usage.completion_tokens >= 1


def test_keys_are_checked_like_the_tinker_api(anvil_server):
    with openai.OpenAI(base_url=f"{anvil_server.base_url}/v1", api_key="sk-not-anvil", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError, match="tml-"):
            wrong.models.list()
    response = httpx.get(f"{anvil_server.base_url}/v1/models", timeout=10)
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


def test_malformed_bodies_are_400s_naming_the_field(anvil_server):
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    url = f"{anvil_server.base_url}/v1/chat/completions"
    not_json = httpx.post(url, content=b"{not json", headers=headers, timeout=10)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    missing = httpx.post(url, json={"model": TINY}, headers=headers, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    nan = httpx.post(url, content=b'{"model": "anvil/tiny-qwen3", "messages": [], "temperature": NaN}', headers=headers, timeout=10)
    assert nan.status_code == 400 and nan.json()["error"]["param"] == "temperature"
    unknown_route = httpx.get(f"{anvil_server.base_url}/v1/embeddings", headers=headers, timeout=10)
    assert unknown_route.status_code == 404 and "error" in unknown_route.json()
    # the Tinker routes keep their own shape
    tinker_missing = httpx.post(f"{anvil_server.base_url}/api/v1/create_session", json={}, timeout=10)
    assert tinker_missing.status_code == 401 and "detail" in tinker_missing.json()


def test_a_stream_the_client_leaves_stops_sampling(client, tuned):
    path, _ = tuned
    stream = client.chat.completions.create(model=TINY, messages=QUESTION, max_tokens=2000, stream=True, seed=1)
    first = next(iter(stream))
    stream.close()
    assert first.choices[0].delta.role == "assistant"
    # the server is still answering at once
    reply = client.chat.completions.create(model=path, messages=QUESTION, temperature=0, max_tokens=24, timeout=30)
    assert reply.choices[0].message.content == ANSWER
