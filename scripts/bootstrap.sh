#!/usr/bin/env bash
# Set up a fresh machine and run the main job.
#  1. (online)  create .venv, install cra, download the sample repo's wheels to .cache/wheels
#  2. (offline) `cra demo`: package the bundled sample, export it to a USB folder, import it
#     into a fresh air-gapped home and print its funnel -- inside a network namespace with no
#     network when this machine allows one, to prove nothing reaches out.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[fast]'
.venv/bin/python -m pip download -q -d .cache/wheels -r corpus/samples/requirements.txt

export CRA_HOME="${CRA_HOME:-$PWD}"
if unshare -n true 2>/dev/null; then
  exec unshare -n .venv/bin/cra demo "$@"
elif unshare -rn true 2>/dev/null; then
  exec unshare -rn .venv/bin/cra demo "$@"
else
  echo "note: no network namespace available here; running the demo with the network up" >&2
  exec .venv/bin/cra demo "$@"
fi
