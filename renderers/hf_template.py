"""Any chat model, through the Jinja chat template its tokenizer ships.

The template's text is tokenized as Hugging Face does, with two safeguards: special-token strings
inside message content stay plain text, and the trained span of each assistant message is found
from the template itself. An assistant message starts where the template's generation prompt for
the conversation before it ends, which requires that prompt to be a prefix of the full text; it
ends with the template's end-of-turn token (found by rendering a probe conversation) or the
end-of-text token. Templates that rewrite history (Qwen3 drops old thinking) break the prefix
rule and are refused for supervised examples: use their own renderer.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import tinker

from renderers.messages import check_messages, content_of, trained_message_indices
from renderers.piece_renderer import PieceRenderer, parse_plain_response
from renderers.pieces import Piece, special, text
from renderers.types import Message, ParsedResponse, ToolSpec, TrainOnWhat

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class HfTemplateRenderer:
    pieces: PieceRenderer
    name: str = "hf_template"

    def build_generation_prompt(
        self, messages: Sequence[Message], prefill: str | None = None, *, tools: Sequence[ToolSpec] | None = None
    ) -> tinker.ModelInput:
        return self.pieces.build_generation_prompt(messages, prefill, tools=tools)

    def build_supervised_example(
        self,
        messages: Sequence[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        *,
        tools: Sequence[ToolSpec] | None = None,
    ) -> tuple[tinker.ModelInput, list[float]]:
        if TrainOnWhat(train_on_what) != TrainOnWhat.ALL_TOKENS:
            trained = trained_message_indices(messages, train_on_what)
            others = sorted(i for i in trained if messages[i]["role"] != "assistant")
            if others:
                raise ValueError(
                    "the hf_template renderer can only train assistant messages (or all tokens); "
                    f"messages {others} are not"
                )
        return self.pieces.build_supervised_example(messages, train_on_what, tools=tools)

    def get_stop_sequences(self) -> list[int]:
        return self.pieces.get_stop_sequences()

    def parse_response(self, tokens: Sequence[int]) -> ParsedResponse:
        return self.pieces.parse_response(tokens)


def _apply(tokenizer, messages, tools, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        list(messages),
        tools=list(tools) if tools else None,
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
    )


def _special_strings(tokenizer) -> list[str]:
    # longest first, so that a token is never matched as a shorter one that prefixes it
    return sorted((t.content for t in tokenizer.added_tokens_decoder.values() if t.special), key=len, reverse=True)


def render_hf_template(
    tokenizer, end_tokens: Sequence[str], messages, tools, add_generation_prompt: bool
) -> list[Piece]:
    check_messages(messages, ROLES, "hf_template")
    full = _apply(tokenizer, messages, tools, add_generation_prompt)
    specials = _special_strings(tokenizer)
    content_spans = _locate_contents(full, messages, specials)
    special_spans = _find_specials(full, specials, content_spans)
    bodies = (
        [] if add_generation_prompt else _assistant_bodies(tokenizer, full, messages, tools, special_spans, end_tokens)
    )

    cuts = {0, len(full)}
    for start, end in content_spans + special_spans:
        cuts |= {start, end}
    for start, end, _ in bodies:
        cuts |= {start, end}
    special_starts = dict(special_spans)
    inside_special = {c for s, e in special_spans for c in cuts if s < c < e}
    boundaries = sorted(cuts - inside_special)

    pieces = []
    for start, end in zip(boundaries, boundaries[1:], strict=False):
        owner = next((index for s, e, index in bodies if s <= start and end <= e), None)
        if special_starts.get(start) == end:
            pieces.append(special(full[start:end], owner, owner is not None))
        else:
            pieces.append(text(full[start:end], owner, owner is not None))
    return pieces


def _locate_contents(full: str, messages: Sequence[Message], specials: list[str]) -> list[tuple[int, int]]:
    """Spans of message contents that hold special-token strings, which must stay plain text."""
    spans, cursor = [], 0
    for index, message in enumerate(messages):
        content = content_of(message)
        for field in ("reasoning_content", "tool_calls"):
            if any(s in str(message.get(field) or "") for s in specials):
                raise ValueError(
                    f"messages[{index}].{field} holds a special-token string; hf_template cannot keep it plain text"
                )
        if not content:
            continue
        at = full.find(content, cursor)
        if at >= 0:
            cursor = at + len(content)
            if any(s in content for s in specials):
                spans.append((at, cursor))
        elif any(s in content for s in specials):
            raise ValueError(
                f"messages[{index}].content holds a special-token string and the template changes the content, "
                "so hf_template cannot keep it plain text"
            )
    return spans


def _find_specials(full: str, specials: list[str], content_spans) -> list[tuple[int, int]]:
    if not specials:
        return []
    pattern = re.compile("|".join(re.escape(s) for s in specials))
    found, start = [], 0
    for span_start, span_end in content_spans + [(len(full), len(full))]:
        found += [(m.start(), m.end()) for m in pattern.finditer(full, start, span_start)]
        start = span_end
    return found


def _assistant_bodies(tokenizer, full, messages, tools, special_spans, end_tokens) -> list[tuple[int, int, int]]:
    bodies = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _apply(tokenizer, messages[:index], tools, True) if index else ""
        if not full.startswith(prompt):
            raise ValueError(
                f"the chat template renders the conversation before messages[{index}] differently once the reply is "
                "added (it rewrites history), so the reply's tokens cannot be told apart; use the model's own renderer"
            )
        start = len(prompt)
        ends = [e for s, e in special_spans if s >= start and full[s:e] in end_tokens]
        if not ends:
            raise ValueError(f"cannot find the end-of-turn token {list(end_tokens)} after messages[{index}]")
        bodies.append((start, ends[0], index))
    return bodies


def find_end_of_turn(tokenizer) -> str | None:
    """The first special token the template writes after an assistant reply, e.g. <|im_end|>."""
    probe = [{"role": "user", "content": "Ping."}, {"role": "assistant", "content": "Pong."}]
    rendered = _apply(tokenizer, probe, None, False)
    after = rendered[rendered.rindex("Pong.") + len("Pong.") :]
    found = [(after.find(s), s) for s in _special_strings(tokenizer) if s in after]
    return min(found)[1] if found else None


def make_hf_template_renderer(tokenizer) -> HfTemplateRenderer:
    if not tokenizer.chat_template:
        raise ValueError(f"the tokenizer {tokenizer.name_or_path!r} has no chat template; pick a renderer by name")
    end_of_turn = find_end_of_turn(tokenizer)
    end_tokens = tuple(t for t in dict.fromkeys([end_of_turn, tokenizer.eos_token]) if t)
    if not end_tokens:
        raise ValueError("the tokenizer has neither an end-of-turn token in its template nor an end-of-text token")
    ids = [tokenizer.convert_tokens_to_ids(t) for t in end_tokens]
    stop_ids, eos_ids = tuple(ids[:1]), tuple(ids[1:])
    pieces = PieceRenderer(
        name="hf_template",
        tokenizer=tokenizer,
        render=partial(render_hf_template, tokenizer, end_tokens),
        parse=partial(parse_plain_response, tokenizer, stop_ids, eos_ids),
        stop_sequences=tuple(ids),
    )
    return HfTemplateRenderer(pieces)
