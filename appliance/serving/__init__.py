"""Serving: the engines (vLLM, llama-server, llama-cpp-python's server) and how each selects a
LoRA per request (``engines``), and ``cra serve``'s process that keeps one in step with the
adapter registry (``server``)."""
