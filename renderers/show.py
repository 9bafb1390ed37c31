"""`python -m renderers show`: print a conversation's tokens with their weights, so that what a
fine-tune will train on can be checked by eye before any training is paid for."""

import argparse
import json
import os
import sys
from pathlib import Path

from renderers.registry import RENDERERS, get_renderer, recommended_renderer_name
from renderers.text_codec import decode_text
from renderers.types import TrainOnWhat

GREEN, DIM, RESET = "\033[32m", "\033[2m", "\033[0m"
# in --no-color output, what marks trained text
OPEN_MARK, CLOSE_MARK = "[[", "]]"


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "conversation", type=Path, help='JSON file: a list of messages, or {"messages": [...], "tools": [...]}'
    )
    parser.add_argument("--model", required=True, help="folder (or hub id, if cached) of the model's tokenizer")
    parser.add_argument("--renderer", choices=list(RENDERERS), help="default: the one recommended for --model")
    parser.add_argument(
        "--train-on", default=TrainOnWhat.LAST_ASSISTANT_MESSAGE.value, choices=[t.value for t in TrainOnWhat]
    )
    parser.add_argument("--no-color", action="store_true", help="mark trained text with [[ ]] instead of colours")
    parser.add_argument("--tokens", action="store_true", help="also list every token with its id and weight")


def run_show(args: argparse.Namespace, out=sys.stdout) -> int:
    # imported here so that `--help` answers without loading transformers
    from transformers import AutoTokenizer

    conversation = json.loads(args.conversation.read_text())
    if isinstance(conversation, list):
        messages, tools = conversation, None
    else:
        messages, tools = conversation["messages"], conversation.get("tools")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    renderer_name = args.renderer or recommended_renderer_name(os.path.basename(os.path.normpath(args.model)))
    renderer = get_renderer(renderer_name, tokenizer)
    model_input, weights = renderer.build_supervised_example(messages, TrainOnWhat(args.train_on), tools=tools)
    tokens = model_input.to_ints()
    color = not args.no_color

    print(f"model: {args.model}  renderer: {renderer_name}  train_on: {args.train_on}", file=out)
    if color:
        print(f"legend: {GREEN}green{RESET} = trained (weight > 0), {DIM}dim{RESET} = not trained (weight 0)", file=out)
    else:
        print(
            f"legend: {OPEN_MARK}text{CLOSE_MARK} = trained (weight > 0), unmarked = not trained (weight 0)", file=out
        )
    print(file=out)
    print(_stream(tokenizer, tokens, weights, color), file=out)
    print(file=out)
    if args.tokens:
        print(f"{'index':>6} {'id':>8} {'weight':>7}  token", file=out)
        for index, (token, weight) in enumerate(zip(tokens, weights, strict=True)):
            line = f"{index:>6} {token:>8} {weight:>7.3g}  {decode_text(tokenizer, [token])!r}"
            print(_paint(line, weight > 0) if color else line, file=out)
        print(file=out)
    trained = sum(1 for w in weights if w > 0)
    print(f"{len(tokens)} tokens, {trained} trained, weight sum {sum(weights):g}", file=out)
    return 0


def _stream(tokenizer, tokens, weights, color: bool) -> str:
    """The decoded text, in runs of equal weight (decoding runs, not single tokens, keeps
    characters split across byte tokens whole), with no clean-up of spaces: what the model reads."""
    parts, start = [], 0
    for end in range(1, len(tokens) + 1):
        if end == len(tokens) or (weights[end] > 0) != (weights[start] > 0):
            run = decode_text(tokenizer, tokens[start:end])
            trained = weights[start] > 0
            if color:
                parts.append(_paint(run, trained))
            else:
                parts.append(f"{OPEN_MARK}{run}{CLOSE_MARK}" if trained else run)
            start = end
    return "".join(parts)


def _paint(value: str, trained: bool) -> str:
    return f"{GREEN if trained else DIM}{value}{RESET}"
