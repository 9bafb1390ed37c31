"""One choice of an OpenAI response, built from the sampled tokens as they arrive.

A builder takes a sequence's SampleDeltas and returns each time what a streamed response sends
for it (None when nothing became certain); after the last delta it holds the whole choice. A
response answered at once is the same builder fed the whole sequence as one delta, which is why
a streamed response concatenates to the one answered at once.
"""

import codecs

from anvil.types import SampleDelta, SampledSequence
from gateway.openai_chat import ReplyStream
from gateway.openai_text import TextStream, TokenNames
from gateway.openai_wire import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatDelta,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    TokenLogprobWire,
    ToolCallDelta,
    ToolCallOut,
    TopLogprobWire,
)


def whole(index: int, sequence: SampledSequence) -> SampleDelta:
    """A sampled sequence as the one delta that a stream of it adds up to."""
    return SampleDelta(index, sequence.tokens, sequence.logprobs, sequence.topk, sequence.stop_reason)


class ChatChoiceBuilder:
    def __init__(self, index: int, text: TextStream, reply: ReplyStream, token_texts: TokenNames, top_logprobs: int | None):
        """`top_logprobs`: None without logprobs, else how many alternatives each token gets."""
        self.index = index
        self._text = text
        self._reply = reply
        self._token_texts = token_texts
        self._top_logprobs = top_logprobs
        self.completion_tokens = 0
        self._logprobs: list[TokenLogprobWire] = []
        self.tool_calls: list[ToolCallOut] | None = None
        self.finish_reason: str | None = None

    def push(self, delta: SampleDelta) -> ChatChunkChoice | None:
        self.completion_tokens += len(delta.tokens)
        view = self._reply.push(self._text.push(delta.tokens))
        reasoning, content = view.reasoning, view.content
        entries = self._entries(delta)
        tool_calls = None
        if delta.stop_reason is not None:
            rest = self._reply.finish(self._text.finish())
            reasoning, content = reasoning + rest.reasoning, content + rest.content
            self.tool_calls = rest.tool_calls
            self.finish_reason = "tool_calls" if rest.tool_calls else delta.stop_reason
            if rest.tool_calls:
                tool_calls = [ToolCallDelta(index=i, **call.model_dump()) for i, call in enumerate(rest.tool_calls)]
        elif not (reasoning or content or entries):
            return None
        return ChatChunkChoice(
            index=self.index,
            delta=ChatDelta(content=content or None, reasoning_content=reasoning or None, tool_calls=tool_calls),
            logprobs=ChoiceLogprobs(content=entries) if entries is not None else None,
            finish_reason=self.finish_reason,
        )

    def choice(self) -> ChatChoice:
        sent = self._reply.sent
        message = AssistantMessage(
            # OpenAI's content is null for a reply that only calls tools
            content=sent.content if sent.content or not self.tool_calls else None,
            reasoning_content=sent.reasoning or None,
            tool_calls=self.tool_calls,
        )
        logprobs = ChoiceLogprobs(content=self._logprobs) if self._top_logprobs is not None else None
        return ChatChoice(index=self.index, message=message, logprobs=logprobs, finish_reason=self.finish_reason)

    def _entries(self, delta: SampleDelta) -> list[TokenLogprobWire] | None:
        if self._top_logprobs is None:
            return None
        entries = []
        for position, (token, logprob) in enumerate(zip(delta.tokens, delta.logprobs, strict=True)):
            text, raw = self._token_texts.of(token)
            alternatives = delta.topk[position][: self._top_logprobs] if delta.topk else []
            top = [TopLogprobWire(token=self._token_texts.of(t)[0], logprob=lp, bytes=self._token_texts.of(t)[1]) for t, lp in alternatives]
            entries.append(TokenLogprobWire(token=text, logprob=logprob, bytes=raw, top_logprobs=top))
        self._logprobs += entries
        return entries


class CompletionChoiceBuilder:
    def __init__(self, index: int, text: TextStream, token_texts: TokenNames, logprobs: int | None):
        """`logprobs`: None without logprobs, else how many alternatives each token gets."""
        self.index = index
        self._text = text
        self._token_texts = token_texts
        self._k = logprobs
        self.completion_tokens = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chars = 0  # characters of the tokens so far, for text_offset
        self._logprobs = CompletionLogprobs(top_logprobs=[] if logprobs else None)
        self.finish_reason: str | None = None

    def push(self, delta: SampleDelta) -> CompletionChoice | None:
        self.completion_tokens += len(delta.tokens)
        text = self._text.push(delta.tokens)
        logprobs = self._entries(delta)
        if delta.stop_reason is not None:
            text += self._text.finish()
            self.finish_reason = delta.stop_reason
        elif not text and logprobs is None:
            return None
        return CompletionChoice(index=self.index, text=text, logprobs=logprobs, finish_reason=self.finish_reason)

    def choice(self) -> CompletionChoice:
        logprobs = self._logprobs if self._k is not None else None
        return CompletionChoice(index=self.index, text=self._text.emitted, logprobs=logprobs, finish_reason=self.finish_reason)

    def _entries(self, delta: SampleDelta) -> CompletionLogprobs | None:
        if self._k is None:
            return None
        entries = CompletionLogprobs(top_logprobs=[] if self._k else None)
        for position, (token, logprob) in enumerate(zip(delta.tokens, delta.logprobs, strict=True)):
            text, raw = self._token_texts.of(token)
            entries.tokens.append(text)
            entries.token_logprobs.append(logprob)
            entries.text_offset.append(self._chars)
            self._chars += len(self._utf8.decode(bytes(raw)))
            if self._k:
                alternatives = delta.topk[position][: self._k] if delta.topk else []
                entries.top_logprobs.append({self._token_texts.of(t)[0]: lp for t, lp in alternatives})
        for name in ("tokens", "token_logprobs", "text_offset"):
            getattr(self._logprobs, name).extend(getattr(entries, name))
        if self._k:
            self._logprobs.top_logprobs.extend(entries.top_logprobs)
        return entries
