"""The two sides of an evaluation: which adapter version each slot uses on each side.

A side is a set of adapter versions, one per slot at most; a slot without one uses the
base model. ``cra eval --candidate scope:v3`` compares the active versions with scope
swapped for v3 (the candidate side) against the active versions (the baseline side), so
the only difference between the sides is the version under evaluation; ``--baseline base``
compares against the base model alone, ``--baseline scope:v2`` against v2 in scope's place.

How a call names its adapter depends on the engine: the in-process llama.cpp provider
loads the adapter's GGUF file, a server (vLLM, llama-cpp-python's, llama-server) serves it
under its name (``scope-v3``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.errors import BadInput

LLAMA_CPP = "llama_cpp"


@dataclass(frozen=True)
class SideAdapter:
    """One adapter version as a side uses it."""

    slot: str
    version: int
    gguf: str | None = None  # the adapter as GGUF (llama.cpp engines)
    dataset_id: int | None = None  # what it was trained on (the leakage check reads it)
    base_gguf: str | None = None  # the base model as GGUF it belongs to

    @property
    def label(self) -> str:
        return f"{self.slot}@v{self.version}"

    @property
    def name(self) -> str:
        """The name a server serves it under."""
        return f"{self.slot}-v{self.version}"


@dataclass(frozen=True)
class Side:
    """One side: a name for reports and the adapter version of each slot that has one."""

    name: str
    adapters: tuple[SideAdapter, ...] = field(default=())

    def __post_init__(self) -> None:
        slots = [a.slot for a in self.adapters]
        if len(set(slots)) != len(slots):
            raise BadInput(f"side {self.name!r} names a slot twice: {', '.join(sorted(slots))}")

    @property
    def key(self) -> str:
        """The versions it uses, e.g. ``plan@v1,scope@v3`` (``base`` for none): what its runs carry."""
        return ",".join(sorted(a.label for a in self.adapters)) or "base"

    def of(self, slot: str | None) -> SideAdapter | None:
        return next((a for a in self.adapters if a.slot == slot), None)

    def version(self, slot: str) -> int | None:
        found = self.of(slot)
        return found.version if found else None

    def adapter_for(self, slot: str | None, provider: str) -> str | None:
        """What a call of ``slot``'s stage passes as its adapter: a GGUF path for the in-process
        llama.cpp provider, the served name for a server; None: the base model."""
        found = self.of(slot)
        if found is None:
            return None
        if provider == LLAMA_CPP:
            if not found.gguf:
                raise BadInput(f"{found.label} has no GGUF copy, which the in-process llama.cpp provider needs",
                               hint="train it with [training] gguf = true, or serve it (cra serve) and pass --endpoint")
            return found.gguf
        return found.name

    @property
    def datasets(self) -> list[int]:
        return sorted({a.dataset_id for a in self.adapters if a.dataset_id is not None})

    def base_ggufs(self) -> set[str]:
        return {a.base_gguf for a in self.adapters if a.base_gguf}

    def with_version(self, adapter: SideAdapter, name: str) -> Side:
        """This side with ``adapter`` in its slot's place."""
        return Side(name, tuple(sorted((*[a for a in self.adapters if a.slot != adapter.slot], adapter),
                                       key=lambda a: a.slot)))

    def only(self, slots: tuple[str, ...]) -> Side:
        """This side with just the adapters of ``slots``."""
        return Side(self.name, tuple(a for a in self.adapters if a.slot in slots))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key,
                "adapters": [{"slot": a.slot, "version": a.version, "dataset_id": a.dataset_id}
                             for a in self.adapters]}
