#!/usr/bin/env bash
# The CUDA paths of cra, end to end, on a GPU box with the gpu extra installed
# (pip install 'cra[train,gpu]'): a small random-weight model built here, two LoRA adapters
# trained with unsloth QLoRA, served by vLLM with per-request adapters whose answers must
# differ, then a new version loaded and a promote applied while vLLM keeps running.
# Nothing is downloaded. Exits non-zero with one line naming what is missing where there
# is no CUDA GPU (or no vllm / unsloth).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA driver here (nvidia-smi is missing): run this on a machine with a CUDA GPU" >&2
  exit 1
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
exec "$python" scripts/gpu_check.py "$@"
