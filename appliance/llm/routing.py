"""Which adapter a request uses, and how each engine is told: ``adapter=SLOT`` made concrete.

The pipeline's stages call ``complete(..., stage="plan")``; with ``AdapterRoutes`` on the
client, the stage's slot (``STAGE_SLOTS``) or an explicit ``adapter=SLOT`` picks that
slot's version, fixed when the routes were built (a run uses one consistent set even if a
promote lands meanwhile). A slot with no version routes to the base model.

An ``AdapterTarget`` carries what every engine needs, and each provider takes its field:

* in-process llama.cpp: ``gguf`` (the adapter as GGUF, given as ``lora_path`` at load)
  on ``base_gguf``;
* vLLM and llama-cpp-python's server: the request's ``model`` is ``name``
  (vLLM ``--lora-modules name=path``, llama-cpp-python ``model_alias``);
* llama-server: the request's ``lora`` list names the adapter's id, found by matching
  ``gguf`` against its ``GET /lora-adapters``.

This module is core: the registry (``appliance.adapters.routes``) builds the routes.
"""

from __future__ import annotations

from dataclasses import dataclass

STAGE_SLOTS: dict[str, str] = {
    "scope": "scope",
    "precision": "precision",
    "plan": "plan",
    "execute": "execute-code",
    "task-analysis": "task-analysis",
}
"""Pipeline stage (``complete(stage=...)``) -> adapter slot. Stages not listed use the base."""


@dataclass(frozen=True)
class AdapterTarget:
    """One adapter version as the engines see it."""

    slot: str
    label: str                  # "plan@v3": what llm_calls.adapter and runs.adapter record
    name: str                   # "plan-v3": the served model name
    gguf: str | None = None     # the adapter as GGUF (llama.cpp engines)
    base_gguf: str | None = None  # the base model as GGUF it belongs to
    peft_dir: str | None = None   # the adapter in PEFT format (vLLM)


class AdapterRoutes:
    """slot -> target for one alias (``active`` or ``candidate``); immutable once built."""

    def __init__(self, targets: dict[str, AdapterTarget], *, alias: str = "active"):
        self.targets = dict(targets)
        self.alias = alias

    def for_slot(self, slot: str) -> AdapterTarget | None:
        return self.targets.get(slot)

    def for_stage(self, stage: str) -> AdapterTarget | None:
        slot = STAGE_SLOTS.get(stage)
        return self.targets.get(slot) if slot else None

    @property
    def label(self) -> str:
        """E.g. ``active:execute-code@v2,plan@v3``; empty when no slot has a version."""
        if not self.targets:
            return ""
        return f"{self.alias}:" + ",".join(t.label for _, t in sorted(self.targets.items()))

    def base_ggufs(self) -> set[str]:
        return {t.base_gguf for t in self.targets.values() if t.base_gguf}
