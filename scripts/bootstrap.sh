#!/usr/bin/env bash
# Set up a fresh machine and run the main job.
#  1. (online)  create .venv, install cra with what the whole loop needs: the CPU build of
#     torch, the train extra (peft, trl) and the llama extra (llama-cpp-python compiles from
#     source once, about 6 minutes on 2 cores; pip caches the wheel); download the sample
#     repo's wheels to .cache/wheels and the llama-cpp-python sdist to .cache/ (its
#     vendored llama.cpp converters make the GGUF files; nothing is downloaded later).
#  2. (offline) `cra demo`: package the bundled sample, export it to a USB folder, import it
#     into a fresh air-gapped home, validate its commits, build a small local model, run the
#     pipeline, build triples, train-plan, curate-data, train a scope adapter, evaluate it on
#     the later commits and write the report -- inside a network namespace with no network
#     when this machine allows one, to prove nothing reaches out.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: this takes the CPU build (a bare "torch" pulls a multi-GB CUDA one).
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[fast,llama,train]'
.venv/bin/python -m pip download -q -d .cache/wheels -r corpus/samples/requirements.txt
llama_version="$(.venv/bin/python -c 'from importlib.metadata import version; print(version("llama_cpp_python"))')"
if ! ls .cache/llama_cpp_python-"$llama_version".tar.gz >/dev/null 2>&1; then
  .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d .cache "llama-cpp-python==$llama_version"
fi

export CRA_HOME="${CRA_HOME:-$PWD}"
if unshare -n true 2>/dev/null; then
  exec unshare -n .venv/bin/cra demo "$@"
elif unshare -rn true 2>/dev/null; then
  exec unshare -rn .venv/bin/cra demo "$@"
else
  echo "note: no network namespace available here; running the demo with the network up" >&2
  exec .venv/bin/cra demo "$@"
fi
