"""Renderer tokens against the real Hugging Face chat templates, conversation by conversation."""

import pytest

from renderers import TrainOnWhat, get_renderer

WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]

# name -> (messages, tools); every prefix ending in a non-assistant message is a generation case,
# every prefix ending in an assistant message a supervised case
CONVERSATIONS = {
    "single_turn": ([{"role": "user", "content": "What is the capital of France?"}], None),
    "system_prompt": (
        [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Capital of Italy?"}],
        None,
    ),
    "multi_turn": (
        [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "Tell me a joke.\n\n  Please."},
            {"role": "assistant", "content": "Why did the chicken cross the road? To get to the other side."},
            {"role": "user", "content": "Another one"},
        ],
        None,
    ),
    "thinking_in_history": (
        [
            {"role": "user", "content": "What is 17 * 3?"},
            {"role": "assistant", "content": "51", "reasoning_content": "17 * 3 = 51."},
            {"role": "user", "content": "And 51 + 9?"},
            {"role": "assistant", "content": "60", "reasoning_content": "51 + 9 = 60.\nSimple."},
            {"role": "user", "content": "Thanks"},
        ],
        None,
    ),
    "thinking_inline_in_content": (
        [
            {"role": "user", "content": "Is 7 prime?"},
            {"role": "assistant", "content": "<think>\nOnly 1 and 7 divide it.\n</think>\n\nYes."},
            {"role": "user", "content": "Is 9?"},
        ],
        None,
    ),
    "tool_calls": (
        [
            {"role": "system", "content": "You can look things up."},
            {"role": "user", "content": "Weather and time in Paris?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"type": "function", "function": {"name": "get_time", "arguments": {}}},
                ],
            },
            {"role": "tool", "content": '{"temp_c": 21, "sky": "clear"}'},
            {"role": "tool", "content": "14:05"},
            {
                "role": "assistant",
                "content": None,  # a message that only calls tools
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}}
                ],
            },
            {"role": "tool", "content": '{"temp_c": 18}'},
            {"role": "assistant", "content": "Paris: 21°C, clear, 14:05. Lyon: 18°C."},
            {"role": "user", "content": "Great, and Nice?"},
        ],
        WEATHER_TOOLS,
    ),
    "whitespace_and_unicode": (
        [
            {"role": "user", "content": "  leading spaces\nand lines\n\n"},
            {"role": "assistant", "content": "Trailing spaces and a newline  \n"},
            {"role": "user", "content": "\n日本語 😀 ok\t"},
            {"role": "assistant", "content": "\nA reply starting with a newline"},
            {"role": "user", "content": "é"},
        ],
        None,
    ),
}

# (renderer, tokenizer fixture, extra template arguments); every renderer with a real template here
TEMPLATED = [
    ("qwen3", "qwen3_tokenizer", {}),
    ("qwen3_disable_thinking", "qwen3_tokenizer", {"enable_thinking": False}),
    ("qwen2_5", "qwen2_5_tokenizer", {}),
    ("phi3", "phi3_tokenizer", {}),
    ("hf_template", "qwen3_tokenizer", {}),
    ("hf_template", "qwen2_5_tokenizer", {}),
    ("hf_template", "phi3_tokenizer", {}),
]


def _cases(ends_with_assistant: bool):
    for renderer_name, tokenizer_fixture, template_kwargs in TEMPLATED:
        for conversation_name, (messages, tools) in CONVERSATIONS.items():
            if tools and tokenizer_fixture == "phi3_tokenizer":
                continue  # Phi-3.5's template has no tool format
            for end in range(1, len(messages) + 1):
                if (messages[end - 1]["role"] == "assistant") != ends_with_assistant:
                    continue
                yield pytest.param(
                    renderer_name,
                    tokenizer_fixture,
                    template_kwargs,
                    messages[:end],
                    tools,
                    id=f"{renderer_name}-{tokenizer_fixture.removesuffix('_tokenizer')}-{conversation_name}-{end}",
                )


def _hf_tokens(tokenizer, messages, tools, template_kwargs, add_generation_prompt):
    text = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False, **template_kwargs
    )
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("renderer_name, tokenizer_fixture, template_kwargs, messages, tools", list(_cases(False)))
def test_generation_prompt_equals_hf(request, renderer_name, tokenizer_fixture, template_kwargs, messages, tools):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    renderer = get_renderer(renderer_name, tokenizer)

    tokens = renderer.build_generation_prompt(messages, tools=tools).to_ints()

    expected = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True, **template_kwargs
    )["input_ids"]
    assert tokens == expected


def _has_rendered_thinking(messages) -> bool:
    return bool(messages[-1].get("reasoning_content")) or "</think>" in (messages[-1].get("content") or "")


@pytest.mark.parametrize("renderer_name, tokenizer_fixture, template_kwargs, messages, tools", list(_cases(True)))
def test_supervised_example_equals_hf_and_trains_only_the_reply(
    request, renderer_name, tokenizer_fixture, template_kwargs, messages, tools
):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    renderer = get_renderer(renderer_name, tokenizer)
    if renderer_name == "qwen3_disable_thinking" and _has_rendered_thinking(messages):
        with pytest.raises(ValueError, match="has thinking"):
            renderer.build_supervised_example(messages, tools=tools)
        return

    model_input, weights = renderer.build_supervised_example(messages, tools=tools)
    tokens = model_input.to_ints()

    full_text, full_tokens = _hf_tokens(tokenizer, messages, tools, template_kwargs, add_generation_prompt=False)
    assert tokens == full_tokens
    if tokenizer_fixture != "phi3_tokenizer":  # Phi's rstrip tokens drop template newlines for good
        assert tokenizer.decode(tokens) == full_text

    # The reply is trained from where HF's own generation prompt ends through the end-of-turn
    # token, and nothing else is.
    _, prompt_tokens = _hf_tokens(tokenizer, messages[:-1], tools, template_kwargs, add_generation_prompt=True)
    if full_tokens[: len(prompt_tokens)] != prompt_tokens:
        # the template itself makes the reply's first token differ from what sampling would give
        # (a reply starting with a newline after "assistant\n"); covered in test_weights.py
        assert messages[-1]["content"].startswith("\n")
        return
    end_of_turn = renderer.get_stop_sequences()[0]
    end = tokens.index(end_of_turn, len(prompt_tokens)) + 1
    expected_weights = [0.0] * len(prompt_tokens) + [1.0] * (end - len(prompt_tokens)) + [0.0] * (len(tokens) - end)
    assert weights == expected_weights


@pytest.mark.parametrize("tokenizer_fixture", ["qwen3_tokenizer", "qwen2_5_tokenizer", "phi3_tokenizer"])
def test_hf_template_renderer_weights_match_the_dedicated_renderer(request, tokenizer_fixture):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    own_renderer = {"qwen3_tokenizer": "qwen3", "qwen2_5_tokenizer": "qwen2_5", "phi3_tokenizer": "phi3"}[
        tokenizer_fixture
    ]
    dedicated = get_renderer(own_renderer, tokenizer)
    generic = get_renderer("hf_template", tokenizer)
    messages = CONVERSATIONS["multi_turn"][0][:5]
    for train_on_what in (
        TrainOnWhat.ALL_ASSISTANT_MESSAGES,
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        TrainOnWhat.ALL_TOKENS,
    ):
        expected_input, expected_weights = dedicated.build_supervised_example(messages, train_on_what)
        model_input, weights = generic.build_supervised_example(messages, train_on_what)
        assert model_input.to_ints() == expected_input.to_ints()
        assert weights == expected_weights
    # the end-of-turn token comes first; the generic renderer knows only the tokenizer's own
    # eos_token besides it (for Qwen that is <|im_end|> itself, not <|endoftext|>)
    assert generic.get_stop_sequences()[0] == dedicated.get_stop_sequences()[0]
    assert set(generic.get_stop_sequences()) <= set(dedicated.get_stop_sequences())


@pytest.mark.parametrize("renderer_name", ["phi3", "hf_template"])
@pytest.mark.parametrize(
    "tokenizer_fixture, first_word",
    [
        ("phi3_tokenizer", "You"),  # transformers 5's build: "▁" only at the start of the document
        ("phi3_file_tokenizer", "▁You"),  # the file's normaliser: "▁" after every special token too
    ],
)
def test_phi3_word_start_marker_follows_the_tokenizer_in_use(request, renderer_name, tokenizer_fixture, first_word):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    renderer = get_renderer(renderer_name, tokenizer)
    for name in ("system_prompt", "multi_turn", "whitespace_and_unicode"):
        messages = CONVERSATIONS[name][0]
        for end in range(1, len(messages) + 1):
            if messages[end - 1]["role"] == "assistant":
                tokens = renderer.build_supervised_example(messages[:end])[0].to_ints()
                _, expected = _hf_tokens(tokenizer, messages[:end], None, {}, add_generation_prompt=False)
            else:
                tokens = renderer.build_generation_prompt(messages[:end]).to_ints()
                _, expected = _hf_tokens(tokenizer, messages[:end], None, {}, add_generation_prompt=True)
            assert tokens == expected, (name, end)
    prompt = renderer.build_generation_prompt(CONVERSATIONS["system_prompt"][0]).to_ints()
    assert tokenizer.convert_ids_to_tokens(prompt[:2]) == ["<|system|>", first_word]


def test_prefill_continues_the_generation_prompt_as_hf_text_would(qwen3_tokenizer):
    renderer = get_renderer("qwen3", qwen3_tokenizer)
    messages = CONVERSATIONS["single_turn"][0]
    prefill = "<think>\nThe user asks"

    tokens = renderer.build_generation_prompt(messages, prefill=prefill).to_ints()

    text = qwen3_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefill
    assert tokens == qwen3_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert 151667 in tokens  # <think> is its own token, as in the model's own output


def test_qwen3_instruct_matches_the_qwen3_template_where_the_formats_agree(qwen3_tokenizer):
    # Qwen3-Instruct-2507 drops thinking altogether; without thinking in the history its
    # generation prompt is what the Qwen3 template gives
    renderer = get_renderer("qwen3_instruct", qwen3_tokenizer)
    for name in ("single_turn", "system_prompt", "multi_turn", "tool_calls"):
        messages, tools = CONVERSATIONS[name]
        tokens = renderer.build_generation_prompt(messages, tools=tools).to_ints()
        expected = qwen3_tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        assert tokens == expected, name
    # and its replies carry no thinking block
    model_input, weights = renderer.build_supervised_example(CONVERSATIONS["multi_turn"][0][:3])
    trained = [t for t, w in zip(model_input.to_ints(), weights, strict=True) if w]
    assert qwen3_tokenizer.decode(trained) == "Hi! How can I help?<|im_end|>"
