"""SQL for the adapter registry: ``adapter_versions``, ``adapter_aliases``, ``adapter_events``.

The only module that touches those tables (migration 9). Versions are immutable rows (the
DB's triggers refuse an UPDATE or DELETE); an alias (``active``, ``candidate``) is one row
per (slot, alias) pointing at a version; every alias move writes an audit row. The
functions that move an alias take the connection of a transaction the caller opened with
``Database.write()``, so "read where the alias points, move it, write the audit row" is
one transaction, serialised by SQLite's ``BEGIN IMMEDIATE`` against any other process.

Policy (which version a rollback goes back to, verifying files first) lives in
``appliance.adapters.registry``; this module only reads and writes rows.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.db.core import Database
from appliance.errors import NotFound
from appliance.status import AdapterAction, AdapterAlias, AdapterSlot, TrainingMethod, values

REGISTRY_VERSION = 1  # of the JSON shapes ``to_dict`` prints


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class AdapterVersion:
    """One trained adapter: ``adapters/<slot>/v<version>/`` and what made it.

    ``files`` maps every file of the folder (relative POSIX path) to its sha256: what
    ``verify`` checks. ``path`` is relative to CRA_HOME.
    """

    slot: str
    version: int
    path: str
    method: str
    rank: int
    base_model: str
    base_sha256: str
    dataset_hash: str
    recipe: dict[str, Any]
    recipe_sha256: str
    files: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    base_gguf: str | None = None
    dataset_id: int | None = None
    id: int | None = None
    created_at: str | None = None

    def __post_init__(self) -> None:
        if self.slot not in values(AdapterSlot):
            raise ValueError(f"unknown adapter slot {self.slot!r}")
        if self.method not in values(TrainingMethod):
            raise ValueError(f"unknown training method {self.method!r}")

    @property
    def name(self) -> str:
        """The name a server serves this version under, e.g. ``plan-v3``."""
        return f"{self.slot}-v{self.version}"

    @property
    def label(self) -> str:
        """How logs and run keys name it, e.g. ``plan@v3``."""
        return f"{self.slot}@v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"version_format": REGISTRY_VERSION, "name": self.name, **asdict(self)}


@dataclass(frozen=True)
class AdapterEvent:
    """One audit row: an alias of a slot moved from one version number to another."""

    id: int
    slot: str
    action: str
    alias: str
    from_version: int | None
    to_version: int | None
    reason: str
    report: str | None
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_VERSION_COLS = ("id, slot, version, path, method, rank, base_model, base_sha256, base_gguf, dataset_id, "
                 "dataset_hash, recipe, recipe_sha256, files, metrics, created_at")


def _version(row: sqlite3.Row) -> AdapterVersion:
    return AdapterVersion(
        id=row["id"], slot=row["slot"], version=row["version"], path=row["path"], method=row["method"],
        rank=row["rank"], base_model=row["base_model"], base_sha256=row["base_sha256"],
        base_gguf=row["base_gguf"], dataset_id=row["dataset_id"], dataset_hash=row["dataset_hash"],
        recipe=json.loads(row["recipe"]), recipe_sha256=row["recipe_sha256"], files=json.loads(row["files"]),
        metrics=json.loads(row["metrics"]), created_at=row["created_at"],
    )


def _event(row: sqlite3.Row) -> AdapterEvent:
    return AdapterEvent(id=row["id"], slot=row["slot"], action=row["action"], alias=row["alias"],
                        from_version=row["from_version"], to_version=row["to_version"],
                        reason=row["reason"], report=row["report"], created_at=row["created_at"])


# ------------------------------------------------------------------------------ reads


def _c(db: Database | sqlite3.Connection) -> sqlite3.Connection:
    return db.conn if isinstance(db, Database) else db


def next_version(conn: sqlite3.Connection | Database, slot: str) -> int:
    row = _c(conn).execute("SELECT COALESCE(MAX(version), 0) + 1 FROM adapter_versions WHERE slot = ?",
                       (slot,)).fetchone()
    return int(row[0])


def list_versions(db: Database | sqlite3.Connection, slot: str | None = None) -> list[AdapterVersion]:
    sql = f"SELECT {_VERSION_COLS} FROM adapter_versions"
    params: tuple[Any, ...] = ()
    if slot is not None:
        sql += " WHERE slot = ?"
        params = (slot,)
    return [_version(r) for r in _c(db).execute(sql + " ORDER BY slot, version", params).fetchall()]


def find_version(db: Database | sqlite3.Connection, slot: str, version: int) -> AdapterVersion | None:
    row = _c(db).execute(f"SELECT {_VERSION_COLS} FROM adapter_versions WHERE slot = ? AND version = ?",
                     (slot, version)).fetchone()
    return _version(row) if row else None


def get_version(db: Database | sqlite3.Connection, slot: str, version: int) -> AdapterVersion:
    found = find_version(db, slot, version)
    if found is None:
        raise NotFound(f"{slot} has no adapter version v{version}",
                       hint=f"see the versions with: cra adapters list {slot}")
    return found


def alias_target(db: Database | sqlite3.Connection, slot: str, alias: str) -> AdapterVersion | None:
    """The version ``alias`` of ``slot`` points at, or None."""
    row = _c(db).execute(
        f"SELECT {', '.join('v.' + c.strip() for c in _VERSION_COLS.split(','))} FROM adapter_aliases a"
        " JOIN adapter_versions v ON v.id = a.version_id WHERE a.slot = ? AND a.alias = ?",
        (slot, alias)).fetchone()
    return _version(row) if row else None


def aliases(db: Database | sqlite3.Connection) -> dict[tuple[str, str], int]:
    """{(slot, alias): version number} for every alias set."""
    rows = _c(db).execute("SELECT a.slot, a.alias, v.version FROM adapter_aliases a"
                      " JOIN adapter_versions v ON v.id = a.version_id").fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def list_events(db: Database | sqlite3.Connection, slot: str | None = None) -> list[AdapterEvent]:
    sql = ("SELECT id, slot, action, alias, from_version, to_version, reason, report, created_at"
           " FROM adapter_events")
    params: tuple[Any, ...] = ()
    if slot is not None:
        sql += " WHERE slot = ?"
        params = (slot,)
    return [_event(r) for r in _c(db).execute(sql + " ORDER BY id", params).fetchall()]


# ----------------------------------------------------------------------------- writes
# Each takes the connection of an open write transaction (``with db.write() as conn``).


def insert_version(conn: sqlite3.Connection, v: AdapterVersion) -> AdapterVersion:
    cur = conn.execute(
        "INSERT INTO adapter_versions (slot, version, path, method, rank, base_model, base_sha256, base_gguf,"
        " dataset_id, dataset_hash, recipe, recipe_sha256, files, metrics, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (v.slot, v.version, v.path, v.method, v.rank, v.base_model, v.base_sha256, v.base_gguf, v.dataset_id,
         v.dataset_hash, _json(v.recipe), v.recipe_sha256, _json(v.files), _json(v.metrics), _now()),
    )
    row = conn.execute(f"SELECT {_VERSION_COLS} FROM adapter_versions WHERE id = ?", (cur.lastrowid,)).fetchone()
    return _version(row)


def move_alias(conn: sqlite3.Connection, slot: str, alias: str, target: AdapterVersion | None, *,
               action: str, reason: str = "", report: str | None = None) -> AdapterEvent:
    """Point ``alias`` of ``slot`` at ``target`` (None: clear it) and write the audit row.

    Reads the alias's current version inside the caller's transaction, so the audit row's
    ``from_version`` is what this transaction replaced, never a stale read.
    """
    if alias not in values(AdapterAlias):
        raise ValueError(f"unknown alias {alias!r}")
    if action not in values(AdapterAction):
        raise ValueError(f"unknown registry action {action!r}")
    before = alias_target(conn, slot, alias)
    now = _now()
    if target is None:
        conn.execute("DELETE FROM adapter_aliases WHERE slot = ? AND alias = ?", (slot, alias))
    else:
        conn.execute(
            "INSERT INTO adapter_aliases (slot, alias, version_id, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (slot, alias) DO UPDATE SET version_id = excluded.version_id,"
            " updated_at = excluded.updated_at",
            (slot, alias, target.id, now),
        )
    cur = conn.execute(
        "INSERT INTO adapter_events (slot, action, alias, from_version, to_version, reason, report, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (slot, action, alias, before.version if before else None, target.version if target else None,
         reason, report, now),
    )
    row = conn.execute("SELECT id, slot, action, alias, from_version, to_version, reason, report, created_at"
                       " FROM adapter_events WHERE id = ?", (cur.lastrowid,)).fetchone()
    return _event(row)
