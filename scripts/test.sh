#!/usr/bin/env bash
# The test command: install cra with its dev tools and the CPU extras (llama, train) into
# .venv, check the code with ruff, then run the whole suite.
# CI runs exactly this (.ci/run). Tests marked "network" use PyPI (the connected side);
# CRA_TEST_OFFLINE=1 skips them.
set -euo pipefail
cd "$(dirname "$0")/.."

# The sandbox's full isolation level needs Debian's bubblewrap; tests exercise it for real.
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
    || echo "warning: could not install bubblewrap; sandbox tests run at a lower isolation level" >&2
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: this takes the CPU build (a bare "torch" pulls a multi-GB CUDA one).
.venv/bin/python -m pip install -q torch==2.13.0
# llama: llama-cpp-python compiles from source once (about 6 minutes); pip caches the wheel.
.venv/bin/python -m pip install -q -e '.[dev,llama,train]'
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -q "$@"
