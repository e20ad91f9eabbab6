"""The backends behind ``LLMClient``; each module imports its heavy library lazily.

``llama_cpp``: in process, a GGUF file (the ``llama`` extra). ``openai_compat``: a
server over HTTP (no extra). ``scripted``: answers from a list, for orchestration tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.errors import ConfigError

if TYPE_CHECKING:
    from appliance.llm.client import LLMConfig, Provider


def make_provider(config: LLMConfig) -> Provider:
    """The provider ``config`` names. A scripted provider is built in code, never from cra.toml."""
    if config.provider == "llama_cpp":
        from appliance.llm.providers.llama_cpp import LlamaCppProvider

        return LlamaCppProvider(config.model, n_ctx=config.n_ctx, n_threads=config.n_threads)
    if config.provider == "openai_compat":
        from appliance.llm.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider.from_config(config)
    raise ConfigError(f"[llm] provider {config.provider!r} cannot be built from settings",
                      hint="use llama_cpp or openai_compat")
