"""The registry's versions as the LLM client's ``AdapterRoutes``: ``--adapters active``.

Every version routed to is verified first (its files re-hashed against the registry), so
the pipeline refuses a tampered adapter before it sends a single request with it.
"""

from __future__ import annotations

from appliance.adapters.registry import GGUF_NAME, check_intact, current, version_dir
from appliance.config import Home
from appliance.db.adapters import AdapterVersion
from appliance.db.core import Database
from appliance.llm.routing import AdapterRoutes, AdapterTarget
from appliance.status import AdapterAlias, AdapterSlot, values


def target_of(home: Home, version: AdapterVersion) -> AdapterTarget:
    folder = version_dir(home, version)
    gguf = folder / GGUF_NAME
    base_gguf = str(home.root / version.base_gguf) if version.base_gguf else None  # "/" + absolute stays
    return AdapterTarget(slot=version.slot, label=version.label, name=version.name,
                         gguf=str(gguf) if GGUF_NAME in version.files else None,
                         base_gguf=base_gguf, peft_dir=str(folder))


def routes_for(db: Database, home: Home, alias: str = AdapterAlias.ACTIVE, *,
               slots: list[str] | None = None, verify: bool = True) -> AdapterRoutes:
    """The ``alias`` version of every slot (or of ``slots``) that has one."""
    targets = {}
    for slot in slots or values(AdapterSlot):
        version = current(db, slot, alias)
        if version is None:
            continue
        if verify:
            check_intact(home, version)
        targets[slot] = target_of(home, version)
    return AdapterRoutes(targets, alias=alias)
