"""Renderers without a real tokenizer here: Llama 3 against its published chat format, and the
plain-text role_colon format for base models."""

import pytest

from renderers import get_renderer


def published_llama3_text(messages, add_generation_prompt: bool) -> str:
    """Llama 3 Instruct's prompt format as Meta documents it: the begin-of-text token once, then
    per message a role header between <|start_header_id|> and <|end_header_id|>, a blank line,
    the whitespace-trimmed content, and <|eot_id|>."""
    text = "<|begin_of_text|>"
    for message in messages:
        text += f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n{message['content'].strip()}<|eot_id|>"
    if add_generation_prompt:
        text += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return text


CONVERSATION = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "  Hello there!\n"},
    {"role": "assistant", "content": "Ahoy, how are you?"},
    {"role": "user", "content": "Fine, thanks."},
    {"role": "assistant", "content": "The assistant answers the user's question."},
]


def test_llama3_generation_prompt_is_the_published_format(llama3_tokenizer):
    renderer = get_renderer("llama3", llama3_tokenizer)
    for end in (2, 4):
        tokens = renderer.build_generation_prompt(CONVERSATION[:end]).to_ints()
        expected = published_llama3_text(CONVERSATION[:end], add_generation_prompt=True)
        assert tokens == llama3_tokenizer(expected, add_special_tokens=False)["input_ids"]
        assert llama3_tokenizer.decode(tokens) == expected
        # the special tokens at Llama 3's ids: one begin-of-text, a header per message plus the new one
        assert tokens[:2] == [128000, 128006]
        assert tokens.count(128000) == 1
        assert tokens.count(128006) == tokens.count(128007) == end + 1
        assert tokens.count(128009) == end
        blank_line = llama3_tokenizer("\n\n", add_special_tokens=False)["input_ids"]
        assert tokens[-1 - len(blank_line) :] == [128007, *blank_line]


def test_llama3_supervised_example_trains_the_reply_and_its_eot(llama3_tokenizer):
    model_input, weights = get_renderer("llama3", llama3_tokenizer).build_supervised_example(CONVERSATION)
    tokens = model_input.to_ints()
    expected = published_llama3_text(CONVERSATION, add_generation_prompt=False)
    assert tokens == llama3_tokenizer(expected, add_special_tokens=False)["input_ids"]
    trained = [t for t, w in zip(tokens, weights, strict=True) if w]
    assert llama3_tokenizer.decode(trained) == "The assistant answers the user's question.<|eot_id|>"
    assert tokens[-1] == 128009 and weights[-1] == 1.0
    # everything before the reply is prompt
    assert weights.index(1.0) == len(
        get_renderer("llama3", llama3_tokenizer).build_generation_prompt(CONVERSATION[:-1]).to_ints()
    )


def test_llama3_refuses_what_it_cannot_render(llama3_tokenizer):
    renderer = get_renderer("llama3", llama3_tokenizer)
    with pytest.raises(ValueError, match="does not know role 'tool'; it knows 'system', 'user', 'assistant'"):
        renderer.build_generation_prompt([{"role": "tool", "content": "42"}])
    with pytest.raises(ValueError, match="no tool format"):
        renderer.build_generation_prompt([{"role": "user", "content": "Hi"}], tools=[{"name": "f"}])


def test_renderer_needs_the_tokens_of_its_format(qwen3_tokenizer):
    with pytest.raises(ValueError, match="has no token '<\\|eot_id\\|>'"):
        get_renderer("llama3", qwen3_tokenizer)


@pytest.mark.parametrize(
    "tokenizer_fixture, begin",
    [("qwen3_tokenizer", ""), ("llama3_tokenizer", "<|begin_of_text|>"), ("phi3_tokenizer", "")],
)
def test_role_colon_format(request, tokenizer_fixture, begin):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    renderer = get_renderer("role_colon", tokenizer)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6, of course."},
    ]
    history = "System: Be brief.\n\nUser: What is 2+2?\n\nAssistant: 4\n\nUser: And 3+3?"

    prompt = renderer.build_generation_prompt(messages[:4]).to_ints()
    assert tokenizer.decode(prompt) == begin + history + "\n\nAssistant:"
    assert prompt == tokenizer(history + "\n\nAssistant:", add_special_tokens=True)["input_ids"]

    model_input, weights = renderer.build_supervised_example(messages)
    tokens = model_input.to_ints()
    assert tokens == tokenizer(history + "\n\nAssistant: 6, of course.\n\nUser:", add_special_tokens=True)["input_ids"]
    trained = [t for t, w in zip(tokens, weights, strict=True) if w]
    # the reply, then the stop string that ends it (decoded after the prompt: a SentencePiece
    # decoder such as Phi-3.5's drops the space that starts the text it decodes)
    assert tokenizer.decode(prompt + trained) == tokenizer.decode(prompt) + " 6, of course.\n\nUser:"

    parsed = renderer.parse_response(trained)
    assert parsed.ending == "stop" and parsed.message == {"role": "assistant", "content": "6, of course."}
