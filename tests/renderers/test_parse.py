"""parse_response inverts rendering, and refuses responses that did not end properly."""

import copy

import pytest

from renderers import get_renderer

USER = {"role": "user", "content": "Weather in Paris and Rome?"}
CALL_PARIS = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "units": "C"}}}
CALL_ROME = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome", "days": [1, 2]}}}

REPLIES = {
    "plain": {"role": "assistant", "content": "It is sunny.\nWarm, too."},
    "thinking": {"role": "assistant", "content": "Sunny.", "reasoning_content": "Recall the forecast.\nIt said sun."},
    "tool_call": {"role": "assistant", "content": "", "tool_calls": [CALL_PARIS]},
    "text_and_tool_calls": {"role": "assistant", "content": "Checking both.", "tool_calls": [CALL_PARIS, CALL_ROME]},
    "thinking_and_tool_call": {
        "role": "assistant",
        "content": "",
        "reasoning_content": "Need the tool.",
        "tool_calls": [CALL_ROME],
    },
}

# which replies each renderer can express
CASES = [
    ("qwen3", "qwen3_tokenizer", list(REPLIES)),
    ("qwen3_disable_thinking", "qwen3_tokenizer", ["plain", "tool_call", "text_and_tool_calls"]),
    ("qwen3_instruct", "qwen3_tokenizer", ["plain", "tool_call", "text_and_tool_calls"]),
    ("qwen2_5", "qwen2_5_tokenizer", ["plain", "tool_call", "text_and_tool_calls"]),
    ("phi3", "phi3_tokenizer", ["plain"]),
    ("llama3", "llama3_tokenizer", ["plain"]),
    ("role_colon", "qwen3_tokenizer", ["plain"]),
    ("hf_template", "phi3_tokenizer", ["plain"]),
]


def _sampled_reply(renderer, reply) -> list[int]:
    """What a sampler returns for the reply: its trained tokens, ending with the stop token."""
    model_input, weights = renderer.build_supervised_example([USER, reply])
    return [t for t, w in zip(model_input.to_ints(), weights, strict=True) if w]


@pytest.mark.parametrize(
    "renderer_name, tokenizer_fixture, reply_name",
    [(r, t, name) for r, t, names in CASES for name in names],
)
def test_round_trip(request, renderer_name, tokenizer_fixture, reply_name):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    renderer = get_renderer(renderer_name, tokenizer)
    reply = REPLIES[reply_name]

    parsed = renderer.parse_response(_sampled_reply(renderer, reply))

    assert parsed.ending == "stop", parsed.problem
    assert parsed.problem is None and parsed.is_well_formed
    assert parsed.message == reply


@pytest.mark.parametrize("renderer_name, tokenizer_fixture, _", CASES)
def test_cut_off_response_is_malformed(request, renderer_name, tokenizer_fixture, _):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    renderer = get_renderer(renderer_name, tokenizer)
    tokens = _sampled_reply(renderer, REPLIES["plain"])

    stop = renderer.get_stop_sequences()[0]
    if isinstance(stop, str):  # a stop string: its last token is enough to break it
        assert stop in tokenizer.decode(tokens)
    else:
        assert tokens[-1] == stop
    parsed = renderer.parse_response(tokens[:-1])

    assert parsed.ending == "malformed" and not parsed.is_well_formed
    assert "ended without" in parsed.problem
    # what was generated is kept for inspection
    assert parsed.message["content"].startswith(REPLIES["plain"]["content"])


def test_end_of_text_instead_of_end_of_turn_is_reported_as_eos(qwen3_tokenizer):
    renderer = get_renderer("qwen3", qwen3_tokenizer)
    tokens = _sampled_reply(renderer, REPLIES["thinking"])
    end_of_text = qwen3_tokenizer.convert_tokens_to_ids("<|endoftext|>")

    parsed = renderer.parse_response(tokens[:-1] + [end_of_text])

    assert parsed.ending == "eos"
    assert parsed.message == REPLIES["thinking"]


def test_tokens_after_the_stop_token_are_ignored(qwen2_5_tokenizer):
    renderer = get_renderer("qwen2_5", qwen2_5_tokenizer)
    tokens = _sampled_reply(renderer, REPLIES["plain"])
    parsed = renderer.parse_response(tokens + qwen2_5_tokenizer.encode("garbage"))
    assert parsed.ending == "stop" and parsed.message == REPLIES["plain"]


@pytest.mark.parametrize(
    "response, problem",
    [
        ("<think>\nStill thinking when the budget ran out", "never closed"),
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>', "not valid JSON"),
        ('<tool_call>\n{"name": "get_weather"}\n</tool_call>', "is not {"),
        ('<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\nand more text', "text after the last tool call"),
        ('<tool_call>\n{"name": "f", "arguments": {}}', "never closed"),
    ],
)
def test_broken_format_is_malformed(qwen3_tokenizer, response, problem):
    renderer = get_renderer("qwen3", qwen3_tokenizer)
    tokens = qwen3_tokenizer(response, add_special_tokens=False)["input_ids"] + [151645]
    parsed = renderer.parse_response(tokens)
    assert parsed.ending == "malformed"
    assert problem in parsed.problem


def test_stop_sequences(qwen3_tokenizer, phi3_tokenizer, llama3_tokenizer):
    assert get_renderer("qwen3", qwen3_tokenizer).get_stop_sequences() == [151645, 151643]
    assert get_renderer("phi3", phi3_tokenizer).get_stop_sequences() == [
        phi3_tokenizer.convert_tokens_to_ids("<|end|>"),
        phi3_tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    assert get_renderer("llama3", llama3_tokenizer).get_stop_sequences() == [128009, 128001]
    assert get_renderer("role_colon", llama3_tokenizer).get_stop_sequences() == ["\n\nUser:"]


@pytest.mark.parametrize(
    "renderer_name, tokenizer_fixture",
    [
        ("llama3", "llama3_tokenizer"),
        ("role_colon", "llama3_tokenizer"),
        ("qwen3", "qwen3_tokenizer"),
        ("qwen2_5", "qwen2_5_tokenizer"),
    ],
)
def test_parsing_keeps_spaces_that_decode_would_clean_up(request, renderer_name, tokenizer_fixture):
    # Llama 3's tokenizer_config sets clean_up_tokenization_spaces, which makes decode turn " ?"
    # into "?". transformers 4 applied it; 5.x skips it for BPE tokenizers unless forced, as here.
    # Either way a parsed reply must be the text that was sampled, or it re-renders differently.
    tokenizer = copy.deepcopy(request.getfixturevalue(tokenizer_fixture))
    tokenizer.clean_up_tokenization_spaces = True
    tokenizer.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = True
    reply = {"role": "assistant", "content": "Ready ? Yes , it is ."}
    assert tokenizer.decode(tokenizer.encode(reply["content"], add_special_tokens=False)) == "Ready? Yes, it is."
    renderer = get_renderer(renderer_name, tokenizer)

    parsed = renderer.parse_response(_sampled_reply(renderer, reply))

    assert parsed.ending == "stop", parsed.problem
    assert parsed.message == reply
