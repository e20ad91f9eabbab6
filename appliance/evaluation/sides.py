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


# ------------------------------------------------------------------------------ from the registry


def parse_ref(text: str) -> tuple[str, str]:
    """``scope:v3`` -> ("scope", "v3"); ``scope`` alone -> ("scope", "candidate")."""
    from appliance.status import AdapterSlot, values

    slot, _, ref = text.partition(":")
    if slot not in values(AdapterSlot):
        raise BadInput(f"{text!r} does not start with an adapter slot",
                       hint=f"write SLOT:vN, e.g. scope:v3 (slots: {', '.join(values(AdapterSlot))})")
    return slot, ref or "candidate"


def side_adapter(home: Any, version: Any) -> SideAdapter:
    """A registry ``AdapterVersion`` as a side uses it (its files verified first)."""
    from appliance.adapters.registry import GGUF_NAME, check_intact, version_dir

    check_intact(home, version)
    gguf = version_dir(home, version) / GGUF_NAME if GGUF_NAME in version.files else None
    base_gguf = str(home.root / version.base_gguf) if version.base_gguf else None
    return SideAdapter(version.slot, version.version, gguf=str(gguf) if gguf else None, dataset_id=version.dataset_id,
                       base_gguf=base_gguf)


def active_side(db: Any, home: Any, name: str = "active") -> Side:
    """Every slot's active version (verified)."""
    from appliance.adapters.registry import current
    from appliance.status import AdapterSlot, values

    found = [current(db, slot, "active") for slot in values(AdapterSlot)]
    return Side(name, tuple(side_adapter(home, v) for v in found if v is not None))


@dataclass(frozen=True)
class Resolved:
    """What ``cra eval --candidate ... --baseline ...`` names, resolved in the registry."""

    slot: str
    kind: str
    candidate: Side
    baseline: Side


def resolve(db: Any, home: Any, candidate: str, baseline: str | None = None) -> Resolved:
    """The two sides of ``cra eval``.

    ``candidate``: ``SLOT:vN`` (or ``SLOT:candidate``, ``SLOT:active``, ``SLOT:latest``);
    ``baseline``: ``active`` (the default for a version that is not active), ``previous``
    (the version active before the active one: the default when the candidate *is* the
    active version, which makes the evaluation a regression check), ``base`` (no adapter
    at all) or ``SLOT:vM`` / ``vM`` (another version of the same slot). The other slots keep
    their active versions on both sides, except against ``base``.
    """
    from appliance.adapters.registry import current, find, rollback_target
    from appliance.status import EvalKind

    slot, ref = parse_ref(candidate)
    version = find(db, slot, ref)
    active = current(db, slot, "active")
    is_active = active is not None and active.id == version.id
    others = active_side(db, home).only(tuple(s for s in _all_slots() if s != slot))
    cand = others.with_version(side_adapter(home, version), "candidate")
    choice = baseline or ("previous" if is_active else "active")
    if choice == "base":
        base = Side("base")
    elif choice == "active":
        if is_active:
            raise BadInput(f"{version.label} is the active version: it cannot be its own baseline",
                           hint="use --baseline previous (the version before it) or base")
        base = others.with_version(side_adapter(home, active), "active") if active else Side("active", others.adapters)
    elif choice == "previous":
        if active is None:
            raise BadInput(f"{slot} has no active version, so no version before it",
                           hint="use --baseline base")
        before = rollback_target(db, slot)  # None: the active one was the first, before it the base model
        base = others.with_version(side_adapter(home, before), "previous") if before else Side("previous", others.adapters)
    else:
        other_slot, other_ref = parse_ref(choice) if ":" in choice else (slot, choice)
        if other_slot != slot:
            raise BadInput(f"--baseline {choice} is a version of {other_slot}, the candidate one of {slot}",
                           hint=f"compare versions of one slot, e.g. --baseline {slot}:v1")
        base = others.with_version(side_adapter(home, find(db, slot, other_ref)), choice)
    kind = EvalKind.REGRESSION if is_active else EvalKind.CANDIDATE
    return Resolved(slot, kind, cand, base)


def _all_slots() -> tuple[str, ...]:
    from appliance.status import AdapterSlot, values

    return tuple(values(AdapterSlot))
