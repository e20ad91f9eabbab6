"""The environment that keeps the machine-learning libraries cra drives off the network.

House rule 2: nothing in cra opens a connection except to a model server the user
configured. transformers, datasets and huggingface_hub fetch from the hub when a name is
not a local path, vLLM reports usage statistics, and a proxy setting could route a
loopback request elsewhere; these variables turn that off. They are read when the
libraries are imported, so they are set before (a child process gets them in its env).
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
}
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def offline_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the offline switches on and no proxy."""
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_ENV)
    for var in PROXY_VARS:
        env.pop(var, None)
    return env
