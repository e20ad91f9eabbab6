"""Trained adapters: the registry of versions and aliases (``registry``) and the routes the
LLM client follows to them (``routes``)."""
