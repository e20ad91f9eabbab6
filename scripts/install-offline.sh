#!/bin/sh
# Install cra on an air-gapped machine from the wheelhouse next to this script.
#
#   sh install-offline.sh [VENV_DIR]
#
# VENV_DIR   where the virtual environment goes (default: $CRA_VENV or ./cra-venv)
# CRA_EXTRAS extras to install, comma-separated (default: llama; empty for none)
# CRA_WHEELS the wheel folder (default: wheels/ next to this script)
# PYTHON     the interpreter to build the venv with (default: python3)
#
# `cra corpus export --with-appliance` writes this script, wheels/ and SHA256SUMS. The
# install never asks a package index: --no-index, and every PIP_* setting of this machine
# (an extra index, find-links, constraints) is dropped so only these wheels can be used.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-${CRA_VENV:-$PWD/cra-venv}}
wheels=${CRA_WHEELS:-$here/wheels}
extras=${CRA_EXTRAS-llama}
python=${PYTHON:-python3}

die() { echo "install-offline.sh: $*" >&2; exit 2; }

[ -d "$wheels" ] || die "no wheel folder at $wheels (set CRA_WHEELS)"
ls "$wheels"/cra-*.whl >/dev/null 2>&1 || die "no cra wheel in $wheels (export again with --with-appliance)"

# A copy that went wrong on the way is caught here, not half-way through pip.
if [ -f "$here/SHA256SUMS" ] && command -v sha256sum >/dev/null 2>&1 && [ -z "${CRA_WHEELS:-}" ]; then
    (cd "$here" && sha256sum --check --quiet --strict SHA256SUMS) \
        || die "a file does not match SHA256SUMS: copy the folder again"
fi

for var in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p; s/^\(UV_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$var"
done
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME 2>/dev/null || true

if [ -n "$extras" ]; then target="cra[$extras]"; else target="cra"; fi

"$python" -m venv "$venv" || die "cannot create a virtual environment at $venv with $python"
"$venv/bin/python" -m pip install --quiet --no-index --find-links "$wheels" "$target" \
    || die "pip could not install $target from $wheels"
"$venv/bin/python" -I -c "import appliance" || die "cra installed but does not import"
echo "cra installed in $venv: run $venv/bin/cra --help"
