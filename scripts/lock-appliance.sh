#!/usr/bin/env bash
# Write the committed locks that install cra itself offline (`cra corpus export
# --with-appliance` builds its wheelhouse from them): packages/appliance.txt for cra alone
# and packages/appliance-<extra>.txt for cra with an extra (default: llama). Online, on
# the connected side; commit the result.
#
#   scripts/lock-appliance.sh [EXTRA ...]
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-$(command -v uv || echo .venv/bin/uv)}
lock() {  # lock OUT [--extra X ...]
  local out=$1; shift
  env -u PIP_FIND_LINKS -u UV_FIND_LINKS "$uv" pip compile pyproject.toml "$@" --generate-hashes \
    --universal --python-version 3.11 --no-header --quiet -o "$out"
  echo "wrote $out"
}
lock packages/appliance.txt
for extra in "${@:-llama}"; do
  lock "packages/appliance-$extra.txt" --extra "$extra"
done
