"""A clean environment for every pip, pip-compile and uv subprocess.

Machines are often configured through ``PIP_*`` variables and pip.conf files (an extra
index, a find-links folder, constraints). For cra that is poison: an offline install with
``--no-index`` would quietly find wheels outside the wheelhouse and "prove" a wheelhouse
complete that is not. So cra's own pip runs see no pip configuration at all.
"""

from __future__ import annotations

import os


def clean_pip_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("PIP_", "UV_")) or k in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"})
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["UV_NO_CONFIG"] = "1"
    if extra:
        env.update(extra)
    return env
