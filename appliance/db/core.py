"""Opening the raw database and writing to it safely.

SQLite allows one writer at a time. Every write goes through ``Database.write()``, which
starts with ``BEGIN IMMEDIATE`` so a second writer waits (``busy_timeout``) instead of
failing half-way, and either commits everything or nothing: a crash or Ctrl-C never
leaves a half-written row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from appliance.errors import BadInput

BUSY_TIMEOUT_MS = 30_000


class Database:
    """A connection to the raw DB with the house rules applied."""

    def __init__(self, path: Path | str, *, migrate: bool = True):
        self.path = Path(path)
        self._utils: Any = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN ourselves, so transactions are explicit.
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise BadInput(
                f"cannot open the database: {exc}",
                path=self.path,
                hint="restore it from a backup or move it away to start a new one",
            ) from exc
        if migrate:
            from appliance.db.migrations import migrate as _migrate

            _migrate(self)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it."""
        if self.conn.in_transaction:  # nested use joins the outer transaction
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def table(self, name: str) -> Any:
        """A ``sqlite_utils`` table over this connection, for wide inserts by column name
        (``db.table("llm_calls").insert(row).last_pk``). Use it inside ``write()``: there
        sqlite-utils nests its own transaction as a savepoint, so the one-writer rule and
        all-or-nothing still hold."""
        if self._utils is None:
            import sqlite_utils

            self._utils = sqlite_utils.Database(self.conn, execute_plugins=False)
        return self._utils.table(name)

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    @property
    def schema_version(self) -> int:
        row = self.one("PRAGMA user_version")
        return int(row[0]) if row else 0


def open_db(path: Path | str) -> Database:
    return Database(path)
