"""The LLM client: one ``complete()`` call over pluggable providers, every call logged.

``client`` holds the call, its settings (``LLMConfig``, the ``[llm]`` table) and the
retry policy; ``providers`` the backends; ``calllog`` where calls are recorded (the
``llm_calls`` table of the raw DB, through ``appliance.db.runs``).
"""

from appliance.llm.client import (
    BoundClient,
    CallContext,
    Completion,
    LLMClient,
    LLMConfig,
    LLMError,
    LLMUnavailable,
    Provider,
    ProviderError,
    ProviderResult,
    Request,
)

__all__ = [
    "BoundClient", "CallContext", "Completion", "LLMClient", "LLMConfig", "LLMError", "LLMUnavailable",
    "Provider", "ProviderError", "ProviderResult", "Request",
]
