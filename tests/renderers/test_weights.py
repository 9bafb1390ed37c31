"""Which tokens a supervised example trains on, token by token."""

import pytest

from renderers import TrainOnWhat, get_renderer


def trained_runs(tokenizer, tokens, weights) -> list[str]:
    """The decoded text of each maximal run of weight-1 tokens."""
    runs, current = [], []
    for token, weight in zip(tokens, weights, strict=True):
        assert weight in (0.0, 1.0)
        if weight:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_printed_qwen3_example_token_by_token(qwen3_tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
    ]
    model_input, weights = get_renderer("qwen3", qwen3_tokenizer).build_supervised_example(messages)
    tokens = model_input.to_ints()

    # The example as `python -m renderers show` prints it: (weight, text) in order.
    printed = [
        (
            0,
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
        (1, "<think>\nAdd them.\n</think>\n\n4<|im_end|>"),
        (0, "\n"),
    ]
    expected_text = "".join(part for _, part in printed)
    expected_weight_at = [float(weight) for weight, part in printed for _ in part]  # per character

    position = 0
    for token, weight in zip(tokens, weights, strict=True):
        piece = qwen3_tokenizer.decode([token])
        assert expected_text[position : position + len(piece)] == piece
        assert set(expected_weight_at[position : position + len(piece)]) == {weight}, (piece, weight)
        position += len(piece)
    assert position == len(expected_text)
    # the special tokens are single tokens at their known ids, and trained where they close the reply
    assert tokens.count(151644) == 3 and tokens.count(151645) == 3
    assert weights[tokens.index(151667)] == 1.0 and weights[tokens.index(151668)] == 1.0
    assert [w for t, w in zip(tokens, weights, strict=True) if t == 151645] == [0.0, 0.0, 1.0]


TOOL_CONVERSATION = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "Sure."},
    {"role": "user", "content": "Now please."},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "Call the tool.",
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    },
    {"role": "tool", "content": "21C"},
    {"role": "assistant", "content": "It is 21C.", "reasoning_content": "Report it."},
]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.mark.parametrize(
    "train_on_what, expected_runs",
    [
        (TrainOnWhat.LAST_ASSISTANT_MESSAGE, ["<think>\nReport it.\n</think>\n\nIt is 21C.<|im_end|>"]),
        (
            TrainOnWhat.LAST_ASSISTANT_TURN,
            [
                f"<think>\nCall the tool.\n</think>\n\n{CALL}<|im_end|>",
                "<think>\nReport it.\n</think>\n\nIt is 21C.<|im_end|>",
            ],
        ),
        (
            TrainOnWhat.ALL_ASSISTANT_MESSAGES,
            [
                "Sure.<|im_end|>",
                f"<think>\nCall the tool.\n</think>\n\n{CALL}<|im_end|>",
                "<think>\nReport it.\n</think>\n\nIt is 21C.<|im_end|>",
            ],
        ),
        (
            TrainOnWhat.ALL_MESSAGES,
            [
                "Use tools.<|im_end|>",
                "Weather in Paris?<|im_end|>",
                "Sure.<|im_end|>",
                "Now please.<|im_end|>",
                f"<think>\nCall the tool.\n</think>\n\n{CALL}<|im_end|>",
                "21C\n</tool_response><|im_end|>",
                "<think>\nReport it.\n</think>\n\nIt is 21C.<|im_end|>",
            ],
        ),
    ],
)
def test_train_on_what_selects_messages(qwen3_tokenizer, train_on_what, expected_runs):
    model_input, weights = get_renderer("qwen3", qwen3_tokenizer).build_supervised_example(
        TOOL_CONVERSATION, train_on_what
    )
    assert trained_runs(qwen3_tokenizer, model_input.to_ints(), weights) == expected_runs


def test_all_tokens_trains_everything(qwen3_tokenizer):
    model_input, weights = get_renderer("qwen3", qwen3_tokenizer).build_supervised_example(
        TOOL_CONVERSATION, "all_tokens"
    )
    assert len(weights) == model_input.length and set(weights) == {1.0}


def test_customized_follows_each_message_flag(qwen2_5_tokenizer):
    renderer = get_renderer("qwen2_5", qwen2_5_tokenizer)
    messages = [
        {"role": "user", "content": "Say A.", "trainable": False},
        {"role": "assistant", "content": "A", "trainable": True},
        {"role": "user", "content": "Say B.", "trainable": True},
        {"role": "assistant", "content": "B", "trainable": False},
    ]
    model_input, weights = renderer.build_supervised_example(messages, TrainOnWhat.CUSTOMIZED)
    assert trained_runs(qwen2_5_tokenizer, model_input.to_ints(), weights) == ["A<|im_end|>", "Say B.<|im_end|>"]

    del messages[3]["trainable"]
    with pytest.raises(ValueError, match=r"'trainable' flag on every message; messages \[3\]"):
        renderer.build_supervised_example(messages, TrainOnWhat.CUSTOMIZED)


def test_selection_errors_are_explicit(qwen2_5_tokenizer):
    renderer = get_renderer("qwen2_5", qwen2_5_tokenizer)
    with pytest.raises(ValueError, match="needs an assistant message"):
        renderer.build_supervised_example([{"role": "user", "content": "Hi"}])
    with pytest.raises(ValueError, match="after the last user message"):
        renderer.build_supervised_example(
            [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Bye"}],
            TrainOnWhat.LAST_ASSISTANT_TURN,
        )
    with pytest.raises(ValueError, match="'not_a_mode' is not a valid TrainOnWhat"):
        renderer.build_supervised_example([{"role": "user", "content": "Hi"}], "not_a_mode")


def test_token_spanning_prompt_and_reply_is_trained(qwen2_5_tokenizer):
    # The Qwen2.5 template writes "assistant\n" + content; a reply starting with a newline merges
    # with the header's newline into one "\n\n" token. That token carries reply text, so it is
    # trained; sampling after the "assistant\n" prompt could not produce it (the template's doing).
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "\nHello"}]
    model_input, weights = get_renderer("qwen2_5", qwen2_5_tokenizer).build_supervised_example(messages)
    tokens = model_input.to_ints()
    assert tokens == qwen2_5_tokenizer(qwen2_5_tokenizer.apply_chat_template(messages, tokenize=False))["input_ids"]
    double_newline = qwen2_5_tokenizer.convert_tokens_to_ids("ĊĊ")
    spanning = tokens.index(double_newline, tokens.index(77091))  # first "\n\n" after "assistant"
    assert weights[spanning] == 1.0 and weights[spanning - 1] == 0.0


@pytest.mark.parametrize(
    "renderer_name, tokenizer_fixture",
    [
        ("qwen3", "qwen3_tokenizer"),
        ("qwen3_disable_thinking", "qwen3_tokenizer"),
        ("qwen3_instruct", "qwen3_tokenizer"),
        ("qwen2_5", "qwen2_5_tokenizer"),
        ("phi3", "phi3_tokenizer"),
        ("llama3", "llama3_tokenizer"),
        ("role_colon", "qwen3_tokenizer"),
        ("role_colon", "llama3_tokenizer"),
        ("hf_template", "qwen2_5_tokenizer"),
    ],
)
def test_trained_tokens_are_what_sampling_after_the_prompt_produces(request, renderer_name, tokenizer_fixture):
    """Train/serve consistency: the generation prompt for the conversation so far, followed by the
    reply's trained tokens, is exactly the start of the supervised example."""
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    renderer = get_renderer(renderer_name, tokenizer)
    messages = [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Green, like grass."},
    ]
    model_input, weights = renderer.build_supervised_example(messages)
    tokens = model_input.to_ints()
    prompt = renderer.build_generation_prompt(messages[:-1]).to_ints()
    reply = [t for t, w in zip(tokens, weights, strict=True) if w]
    assert tokens[: len(prompt) + len(reply)] == prompt + reply
    assert weights[: len(prompt)] == [0.0] * len(prompt)
