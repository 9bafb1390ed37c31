"""Sampled tokens to OpenAI text and messages: streamed piece by piece, they add up to the reply
answered at once, and a reply reads as the renderer's own parse_response reads it."""

import json
import os
import random
from pathlib import Path

import pytest

from gateway.openai_chat import REPLY_FORMATS, ReplyFormat, ReplyStream
from gateway.openai_text import TextStream, TokenTexts, decode
from renderers import get_renderer

TOKENIZERS_DIR = Path(
    os.environ.get("ANVIL_TOKENIZERS_DIR", Path(__file__).resolve().parents[3] / "shared" / "assets" / "tokenizers")
)

REPLIES = [
    "<think>\nLet me see.\nIt is Paris.\n</think>\n\nParis.",
    "<think>\n\n</think>\n\nParis",
    "Plain answer\n\nwith lines\n",
    "<thi",
    "<think>\ncut off while thin",
    "<think>\nno end\n\n",
    'Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>',
    '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "g", "arguments": {"y": "z"}}\n</tool_call>',
    "Text\n\n<tool_call>\n{not json}\n</tool_call>",
    "Almost <tool_ca",
    "a </think> b </thi",
    "</think>\nParis is the capital.",
    "<think>\na\n</think>\n</think>\nParis",
    "Some thought\n</think>\n\nThe answer",
    " leading space, then text",
    "",
]
FORMATS = {
    "qwen3+tools": (REPLY_FORMATS["qwen3"], True),
    "qwen3": (REPLY_FORMATS["qwen3"], False),
    "qwen2_5+tools": (REPLY_FORMATS["qwen2_5"], True),
    "role_colon": (REPLY_FORMATS["role_colon"], False),
    "plain": (ReplyFormat(), False),
}


def _pieces(text: str, how: str) -> list[str]:
    if how == "whole":
        return [text]
    if how == "chars":
        return list(text)
    rng = random.Random(len(text))
    pieces, at = [], 0
    while at < len(text):
        step = rng.randint(1, 5)
        pieces.append(text[at : at + step])
        at += step
    return pieces


def _streamed(fmt: ReplyFormat, tools: bool, pieces: list[str]):
    reply = ReplyStream(fmt, parse_tool_calls=tools)
    reasoning, content = "", ""
    for piece in pieces:
        view = reply.push(piece)
        reasoning, content = reasoning + view.reasoning, content + view.content
    last = reply.finish()
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in last.tool_calls or []]
    return reasoning + last.reasoning, content + last.content, calls


@pytest.mark.parametrize("format_name", FORMATS)
@pytest.mark.parametrize("reply", REPLIES)
def test_a_streamed_reply_adds_up_to_the_whole_reply(format_name, reply):
    fmt, tools = FORMATS[format_name]
    whole = _streamed(fmt, tools, [reply])
    for how in ("chars", "chunks"):
        assert _streamed(fmt, tools, _pieces(reply, how)) == whole, how


def test_thinking_content_and_tool_calls_are_split():
    fmt = REPLY_FORMATS["qwen3"]
    assert _streamed(fmt, True, [REPLIES[0]]) == ("Let me see.\nIt is Paris.", "Paris.", [])
    assert _streamed(fmt, True, [REPLIES[6]]) == ("", "Sure.", [("f", {"x": 1})])
    assert _streamed(fmt, True, [REPLIES[7]]) == ("", "", [("f", {}), ("g", {"y": "z"})])
    # a malformed call is left as the text the model wrote
    assert _streamed(fmt, True, [REPLIES[8]]) == ("", REPLIES[8], [])
    # without tools in the request nothing is parsed as a call
    assert _streamed(fmt, False, [REPLIES[6]]) == ("", REPLIES[6], [])
    # the content starts after the first </think>, as a stream can only know that one
    assert _streamed(fmt, False, ["<think>\na\n</think>\n</think>\nParis"]) == ("a", "</think>\nParis", [])
    # thinking without its <think>, as the Qwen3 parser reads it
    assert _streamed(fmt, False, ["</think>\nParis is the capital."]) == ("", "Paris is the capital.", [])
    assert _streamed(fmt, False, ["Some thought\n</think>\n\nThe answer"]) == ("Some thought", "The answer", [])
    # cut off while thinking: all of it is reasoning
    assert _streamed(fmt, False, [REPLIES[4]]) == ("cut off while thin", "", [])
    assert _streamed(REPLY_FORMATS["role_colon"], False, [" Hi there"]) == ("", "Hi there", [])


def _load(folder: str):
    path = TOKENIZERS_DIR / folder
    if not path.is_dir():
        pytest.skip(f"real tokenizer {folder!r} not found at {path} (set ANVIL_TOKENIZERS_DIR)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    return _load("qwen3")


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CONVERSATIONS = [
    [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris.\n\nIt is.", "reasoning_content": "Easy."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Héllo 你好 🙂"}],
    [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}},
        ]},
    ],
]


@pytest.mark.parametrize("renderer_name", ["qwen3", "qwen3_instruct", "qwen2_5"])
@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["thinking", "unicode", "tool-calls"])
def test_replies_read_as_the_renderer_parses_them(qwen3_tokenizer, renderer_name, conversation):
    renderer = get_renderer(renderer_name, qwen3_tokenizer)
    if renderer_name != "qwen3":
        conversation = [{k: v for k, v in m.items() if k != "reasoning_content"} for m in conversation]
    prompt = renderer.build_generation_prompt(conversation[:-1], tools=TOOLS).to_ints()
    full = renderer.build_supervised_example(conversation, tools=TOOLS)[0].to_ints()
    assert full[: len(prompt)] == prompt
    reply_tokens = full[len(prompt) :]
    expected = renderer.parse_response(reply_tokens).message

    for step in (len(reply_tokens), 1, 3):
        text = TextStream(qwen3_tokenizer, renderer.get_stop_sequences(), ())
        reply = ReplyStream(REPLY_FORMATS[renderer_name], parse_tool_calls=True)
        reasoning, content = "", ""
        for at in range(0, len(reply_tokens), step):
            view = reply.push(text.push(reply_tokens[at : at + step]))
            reasoning, content = reasoning + view.reasoning, content + view.content
        last = reply.finish(text.finish())
        assert content + last.content == expected["content"]
        assert reasoning + last.reasoning == expected.get("reasoning_content", "")
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in last.tool_calls or []]
        assert calls == [(c["function"]["name"], c["function"]["arguments"]) for c in expected.get("tool_calls", [])]


def test_text_streams_token_by_token_as_decoded_at_once(qwen3_tokenizer):
    text = "Héllo 你好 🙂, naïve café. STOP here? no: STOP!"
    tokens = qwen3_tokenizer.encode(text)
    end = qwen3_tokenizer.convert_tokens_to_ids("<|im_end|>")
    for stops, want in (((), text), (("STOP!",), "Héllo 你好 🙂, naïve café. STOP here? no: "), (("🙂",), "Héllo 你好 ")):
        stream = TextStream(qwen3_tokenizer, [end], stops)
        pieces = [stream.push([token]) for token in tokens + [end, 42]]
        assert "".join(pieces) + stream.finish() == want
        assert all("\ufffd" not in piece for piece in pieces)  # no half characters handed out
        whole = TextStream(qwen3_tokenizer, [end], stops)
        assert whole.push(tokens) + whole.finish() == want


def test_token_bytes_add_up_to_the_text(qwen3_tokenizer):
    text = "Héllo 你好 🙂 <|im_end|>"
    tokens = qwen3_tokenizer.encode(text)
    texts = TokenTexts(qwen3_tokenizer)
    assert b"".join(bytes(texts.of(token)[1]) for token in tokens) == text.encode()
    assert decode(qwen3_tokenizer, tokens) == text


@pytest.mark.parametrize("renderer_name", ["qwen3", "qwen3_disable_thinking", "qwen3_instruct", "qwen2_5"])
@pytest.mark.parametrize("reply", [
    "</think>\nParis is the capital.",
    "<think>\nhmm\n</think>\n\nok",
    "Plain\n\ntext",
    'Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": [1, 2]}}\n</tool_call>',
])
def test_sampled_replies_read_as_the_renderer_parses_them(qwen3_tokenizer, renderer_name, reply):
    renderer = get_renderer(renderer_name, qwen3_tokenizer)
    expected = renderer.parse_response(qwen3_tokenizer.encode(reply) + [renderer.get_stop_sequences()[0]])
    if not expected.is_well_formed:
        pytest.skip(f"{renderer_name} reads {reply!r} as malformed ({expected.problem})")
    text = TextStream(qwen3_tokenizer, renderer.get_stop_sequences(), ())
    stream = ReplyStream(REPLY_FORMATS[renderer_name], parse_tool_calls=True)
    last = stream.finish(text.push(qwen3_tokenizer.encode(reply)) + text.finish())
    if renderer_name == "qwen3_disable_thinking" and "</think>" in reply:
        # the prompt closed the thinking block: a </think> in the reply is text, streamed as written
        assert (stream.sent.reasoning, stream.sent.content) == ("", reply)
        return
    assert stream.sent.content == expected.message["content"]
    assert stream.sent.reasoning == expected.message.get("reasoning_content", "")
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in last.tool_calls or []]
    assert calls == [(c["function"]["name"], c["function"]["arguments"]) for c in expected.message.get("tool_calls", [])]
