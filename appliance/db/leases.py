"""SQL for the ``leases`` table: units of work claimed by one process at a time.

Two ``cra harness validate`` on one home (two terminals, or a second one started while
the first still runs) share the kept commits instead of both validating every one. A
process claims a unit by holding its row (``claim``), keeps it alive with a heartbeat
(``Heartbeat`` renews ``expires_ts`` every ``lease_s / 3`` seconds from its own
connection) and drops it with the result it stores (``release``). A unit whose owner is
dead is taken over: at once when the owner ran on this host and its pid is gone (kill -9,
OOM), else when its lease runs out (another host, or a hung process).

The claim is one ``BEGIN IMMEDIATE`` transaction, so two processes can never both win
it; the task row (``tasks``) stays the proof that a unit is done.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Self

from appliance.db.core import Database
from appliance.db.corpus import get_repo
from appliance.status import LeaseKind

DEFAULT_LEASE_S = 120.0


class Claim(StrEnum):
    """What ``claim`` found."""

    CLAIMED = "claimed"        # the unit is ours now (new, or already ours)
    TAKEN_OVER = "taken_over"  # its owner died or its lease ran out: ours now
    HELD = "held"              # a live process holds it: come back later
    DONE = "done"              # its result is already stored: nothing to do


@dataclass(frozen=True)
class Owner:
    """A claiming process: ``host:pid:token`` (the token tells two lives of one pid apart)."""

    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


def owner_alive(host: str, pid: int) -> bool | None:
    """True/False for a process of this host; None (unknown) for another host's."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _done(c, repo_id: int, sha: str) -> bool:
    return c.execute("SELECT 1 FROM tasks WHERE repo_id = ? AND sha = ?", (repo_id, sha)).fetchone() is not None


def claim(db: Database, kind: LeaseKind, repo: str, sha: str, owner: Owner, *,
          lease_s: float = DEFAULT_LEASE_S, now: float | None = None, redo: bool = False) -> Claim:
    """Try to make ``(kind, repo, sha)`` ours for ``lease_s`` seconds, in one transaction.

    ``redo``: the unit is wanted even though its result is stored (``--force``).
    """
    repo_id = get_repo(db, repo).id
    now = time.time() if now is None else now
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with db.write() as c:
        if not redo and kind == LeaseKind.VALIDATE and _done(c, repo_id, sha):
            return Claim.DONE
        row = c.execute("SELECT owner, host, pid, expires_ts FROM leases WHERE kind = ? AND repo_id = ? AND sha = ?",
                        (kind, repo_id, sha)).fetchone()
        if row is None:
            c.execute("INSERT INTO leases (kind, repo_id, sha, owner, host, pid, claimed_at, expires_ts)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (kind, repo_id, sha, owner.id, owner.host, owner.pid, stamp, now + lease_s))
            return Claim.CLAIMED
        if row["owner"] == owner.id:
            c.execute("UPDATE leases SET expires_ts = ? WHERE kind = ? AND repo_id = ? AND sha = ?",
                      (now + lease_s, kind, repo_id, sha))
            return Claim.CLAIMED
        dead = owner_alive(row["host"], row["pid"]) is False
        if not dead and row["expires_ts"] > now:
            return Claim.HELD
        c.execute("UPDATE leases SET owner = ?, host = ?, pid = ?, claimed_at = ?, expires_ts = ?,"
                  " taken_over = taken_over + 1 WHERE kind = ? AND repo_id = ? AND sha = ?",
                  (owner.id, owner.host, owner.pid, stamp, now + lease_s, kind, repo_id, sha))
        return Claim.TAKEN_OVER


def release(db: Database, kind: LeaseKind, repo: str, sha: str, owner: Owner) -> None:
    """Drop our claim on one unit (with its result, in the caller's transaction when there is one)."""
    repo_id = get_repo(db, repo).id
    with db.write() as c:
        c.execute("DELETE FROM leases WHERE kind = ? AND repo_id = ? AND sha = ? AND owner = ?",
                  (kind, repo_id, sha, owner.id))


def release_all(db: Database, owner: Owner) -> int:
    """Drop every claim of ``owner`` (its run ended, or was stopped): others may take them now."""
    with db.write() as c:
        return c.execute("DELETE FROM leases WHERE owner = ?", (owner.id,)).rowcount


def renew_all(db: Database, owner: Owner, lease_s: float) -> int:
    with db.write() as c:
        return c.execute("UPDATE leases SET expires_ts = ? WHERE owner = ?",
                         (time.time() + lease_s, owner.id)).rowcount


def held(db: Database, kind: LeaseKind, repo: str) -> list[dict[str, object]]:
    """The live rows of a repo's leases: who holds what, until when."""
    repo_id = get_repo(db, repo).id
    return [dict(r) for r in db.query(
        "SELECT sha, owner, host, pid, claimed_at, expires_ts, taken_over FROM leases"
        " WHERE kind = ? AND repo_id = ? ORDER BY id", (kind, repo_id))]


class Heartbeat:
    """Renews every claim of ``owner`` each ``lease_s / 3`` seconds, from its own connection
    (a SQLite connection belongs to its thread), until ``stop()``."""

    def __init__(self, db: Database, owner: Owner, lease_s: float):
        self.path, self.owner, self.lease_s = db.path, owner, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _beat(self) -> None:
        own = Database(self.path, migrate=False)
        try:
            while not self._stop.wait(self.lease_s / 3):
                renew_all(own, self.owner, self.lease_s)
        finally:
            own.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
