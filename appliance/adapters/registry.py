"""The adapter registry: immutable versions, ``active``/``candidate`` aliases, promote, rollback.

Shaped like MLflow's model registry. A slot (scope, precision, plan, execute-code,
task-analysis) has versions ``v1, v2, ...``, each a folder ``adapters/<slot>/v<N>/`` and a
row holding the sha256 of every file in it; nothing ever rewrites or deletes either.
Aliases point at versions: ``cra train`` makes each new version the ``candidate``; a
promote points ``active`` at a chosen version (by default the candidate) and a rollback
points it back at the version that was active before. Each move is one transaction with
an audit row (when, slot, from, to, why, the evaluation report), so two promotes at once
serialise: the second sees the first's result, and a slot never has two active versions.

``verify`` re-hashes a version's files; a tampered version is refused by promote,
rollback, ``cra serve`` and the pipeline (``routes``).

Library API (what ``cra adapters``, ``cra serve`` and ``cra cycle`` call)::

    register(db, home, slot, staging, meta)            -> AdapterVersion  (cra train)
    promote(db, home, slot, version=None, reason=..., report=...)  -> AdapterEvent
    rollback(db, home, slot, to=None|version|"base", reason=..., report=...) -> AdapterEvent
    current(db, slot, "active"|"candidate")            -> AdapterVersion | None
    find(db, slot, "v3"|3|"active"|"candidate"|"latest") -> AdapterVersion
    versions(db, slot=None), history(db, slot=None), overview(db)
    verify(home, version) -> VerifyReport;  check_intact(home, version) raises AdapterTampered
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.atomic import write_atomic
from appliance.config import Home
from appliance.db import adapters as sql
from appliance.db.adapters import AdapterEvent, AdapterVersion
from appliance.db.core import Database
from appliance.errors import AdapterTampered, BadInput, NotFound
from appliance.hashing import sha256_file, sha256_tree
from appliance.status import AdapterAction, AdapterAlias, AdapterSlot, values

METADATA = "metadata.json"
GGUF_NAME = "adapter.gguf"  # the llama.cpp copy beside the PEFT files
METADATA_VERSION = 1


def check_slot(slot: str) -> str:
    if slot not in values(AdapterSlot):
        raise BadInput(f"unknown adapter slot {slot!r}", hint=f"use one of {', '.join(values(AdapterSlot))}")
    return slot


def version_dir(home: Home, version: AdapterVersion) -> Path:
    return home.root / version.path


# ------------------------------------------------------------------------------ register


@dataclass
class VersionMeta:
    """What ``cra train`` knows about a new version besides its files: ``AdapterVersion``'s
    fields less what registering decides (number, path, hashes), plus ``extra`` for
    ``metadata.json`` only."""

    method: str
    rank: int
    base_model: str
    base_sha256: str
    dataset_hash: str
    recipe: dict[str, Any]
    recipe_sha256: str
    metrics: dict[str, Any] = field(default_factory=dict)
    base_gguf: str | None = None
    dataset_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more for metadata.json (dataset content hash ...)


def register(db: Database, home: Home, slot: str, staging: Path, meta: VersionMeta, *,
             reason: str = "trained") -> AdapterVersion:
    """Move ``staging`` to ``adapters/<slot>/v<N>/`` as the next version and make it the candidate.

    One transaction: the version number is taken, ``metadata.json`` written (base model
    hash, dataset id and hash, recipe, metrics, sha256 of every other file), the folder
    moved into place, the row inserted and the candidate alias moved with its audit row.
    A failure moves the folder back, so neither a row without files nor files without a
    row is left (a folder left by a crash at the worst moment is set aside, never reused).
    """
    check_slot(slot)
    if not staging.is_dir() or not any(staging.iterdir()):
        raise BadInput("nothing to register: the staging folder is empty", path=staging)
    with db.write() as conn:
        number = sql.next_version(conn, slot)
        dest = home.adapters / slot / f"v{number}"
        if dest.exists():  # no row claims it: a crash between the move and the commit
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            os.replace(dest, dest.with_name(f"{dest.name}.orphaned-{stamp}"))
        payload_files = sha256_tree(staging)
        payload_files.pop(METADATA, None)
        trained = {k: v for k, v in asdict(meta).items() if k != "extra"}
        metadata = {"format_version": METADATA_VERSION, "slot": slot, "version": number,
                    "name": f"{slot}-v{number}", **trained, **meta.extra, "files": payload_files}
        write_atomic(staging / METADATA, json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        files = {**payload_files, METADATA: sha256_file(staging / METADATA)}
        dest.parent.mkdir(parents=True, exist_ok=True)
        _move(staging, dest)
        try:
            version = sql.insert_version(conn, AdapterVersion(
                slot=slot, version=number, path=dest.relative_to(home.root).as_posix(), files=files, **trained))
            sql.move_alias(conn, slot, AdapterAlias.CANDIDATE, version, action=AdapterAction.REGISTER,
                           reason=reason)
        except BaseException:
            _move(dest, staging)
            raise
    return version


def _move(src: Path, dest: Path) -> None:
    try:
        os.replace(src, dest)
    except OSError:  # another filesystem: copy, then remove
        shutil.move(str(src), str(dest))


# --------------------------------------------------------------------------------- reads


def versions(db: Database, slot: str | None = None) -> list[AdapterVersion]:
    return sql.list_versions(db, check_slot(slot) if slot else None)


def current(db: Database, slot: str, alias: str = AdapterAlias.ACTIVE) -> AdapterVersion | None:
    return sql.alias_target(db, check_slot(slot), alias)


def find(db: Database, slot: str, ref: str | int | None = None) -> AdapterVersion:
    """A version by number (``3``, ``"v3"``), alias (``active``, ``candidate``) or ``latest``."""
    check_slot(slot)
    ref = "latest" if ref is None else ref
    if isinstance(ref, str) and ref in values(AdapterAlias):
        found = sql.alias_target(db, slot, ref)
        if found is None:
            raise NotFound(f"{slot} has no {ref} version",
                           hint=f"see 'cra adapters list {slot}'; 'cra train {slot}' makes a candidate")
        return found
    if ref == "latest":
        listed = sql.list_versions(db, slot)
        if not listed:
            raise NotFound(f"{slot} has no adapter version yet", hint=f"train one: cra train {slot} --dataset ID")
        return listed[-1]
    text = str(ref).removeprefix("v")
    if not text.isdigit():
        raise BadInput(f"{ref!r} is not a version", hint="give a number (3 or v3), active, candidate or latest")
    return sql.get_version(db, slot, int(text))


def history(db: Database, slot: str | None = None) -> list[AdapterEvent]:
    return sql.list_events(db, check_slot(slot) if slot else None)


def overview(db: Database) -> list[dict[str, Any]]:
    """Per slot: how many versions, the active and candidate version numbers."""
    pointers = sql.aliases(db)
    counts: dict[str, int] = {}
    for v in sql.list_versions(db):
        counts[v.slot] = counts.get(v.slot, 0) + 1
    return [{"slot": slot, "versions": counts.get(slot, 0),
             "active": pointers.get((slot, AdapterAlias.ACTIVE)),
             "candidate": pointers.get((slot, AdapterAlias.CANDIDATE))}
            for slot in values(AdapterSlot)]


# -------------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """What re-hashing one version found; ``ok`` when every file is as recorded."""

    slot: str
    version: int
    path: str
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.unexpected)

    def describe(self) -> str:
        parts = [f"{what}: {', '.join(names)}" for what, names in
                 (("changed", self.changed), ("missing", self.missing), ("unexpected", self.unexpected)) if names]
        return "; ".join(parts) or "intact"

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "version": self.version, "path": self.path, "ok": self.ok,
                "changed": self.changed, "missing": self.missing, "unexpected": self.unexpected}


def verify(home: Home, version: AdapterVersion) -> VerifyReport:
    """Re-hash every file of ``version`` against the row's record."""
    folder = version_dir(home, version)
    report = VerifyReport(version.slot, version.version, version.path)
    try:
        found = sha256_tree(folder) if folder.is_dir() else {}
    except ValueError as exc:  # a symlink planted in the folder
        report.unexpected.append(str(exc))
        return report
    for rel, digest in sorted(version.files.items()):
        if rel not in found:
            report.missing.append(rel)
        elif found[rel] != digest:
            report.changed.append(rel)
    report.unexpected.extend(sorted(set(found) - set(version.files)))
    return report


def check_intact(home: Home, version: AdapterVersion) -> AdapterVersion:
    """``version`` when its files are as trained; else ``AdapterTampered`` saying what changed."""
    report = verify(home, version)
    if not report.ok:
        raise AdapterTampered(
            f"{version.label} ({version.path}) does not match the sha256 recorded when it was trained: "
            f"{report.describe()}",
            hint=f"refusing to use it; restore the files, or roll back: cra adapters rollback {version.slot}")
    return version


# --------------------------------------------------------------------- promote / rollback


def promote(db: Database, home: Home, slot: str, version: str | int | None = None, *, reason: str = "",
            report: str | None = None) -> AdapterEvent:
    """Point ``active`` at ``version`` (default: the candidate), in one transaction with its audit row.

    Refuses a tampered version and a version that is already active. ``report`` names the
    evaluation report that justified the promote (issue 14's ``cra eval``).
    """
    check_slot(slot)
    with db.write() as conn:
        target = find(db, slot, AdapterAlias.CANDIDATE if version is None else version)
        check_intact(home, target)
        before = sql.alias_target(conn, slot, AdapterAlias.ACTIVE)
        if before is not None and before.id == target.id:
            raise BadInput(f"{target.label} is already the active version of {slot}",
                           hint=f"see 'cra adapters list {slot}'")
        return sql.move_alias(conn, slot, AdapterAlias.ACTIVE, target, action=AdapterAction.PROMOTE,
                              reason=reason, report=report)


BASE = "base"
"""``rollback(..., to=BASE)``: no adapter for the slot, its stage runs on the base model."""


def rollback_target(db: Database, slot: str) -> AdapterVersion | None:
    """The version that was active before the current one was promoted; None: the base model
    (the current one was the slot's first active version)."""
    active = sql.alias_target(db, slot, AdapterAlias.ACTIVE)
    if active is None:
        raise BadInput(f"{slot} has no active version to roll back (its stage already runs on the base model)",
                       hint=f"see 'cra adapters history {slot}'")
    promotes = [e for e in sql.list_events(db, slot)
                if e.action == AdapterAction.PROMOTE and e.alias == AdapterAlias.ACTIVE
                and e.to_version == active.version]
    previous = promotes[-1].from_version if promotes else None
    return sql.get_version(db, slot, previous) if previous is not None else None


def rollback(db: Database, home: Home, slot: str, *, to: str | int | None = None, reason: str = "",
             report: str | None = None) -> AdapterEvent:
    """Point ``active`` back, in one transaction with its audit row; never deletes files.

    By default to the version active before the current one was promoted, or, when the
    current one was the first, to no version at all (``to="base"``): the slot's stage then
    runs on the base model, as it did before any adapter (seed 004 §6: a regression after a
    promote is rolled back at once).
    """
    check_slot(slot)
    with db.write() as conn:
        if to is None:
            target = rollback_target(db, slot)
        else:
            target = None if str(to) == BASE else find(db, slot, to)
        active = sql.alias_target(conn, slot, AdapterAlias.ACTIVE)
        if active is None and target is None:
            raise BadInput(f"{slot} already runs on the base model: it has no active version")
        if active is not None and target is not None and active.id == target.id:
            raise BadInput(f"{target.label} is already the active version of {slot}")
        if target is not None:
            check_intact(home, target)
        return sql.move_alias(conn, slot, AdapterAlias.ACTIVE, target, action=AdapterAction.ROLLBACK,
                              reason=reason, report=report)
