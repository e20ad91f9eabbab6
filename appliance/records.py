"""Plain records shared by the harness, the DB layer and the manifest.

They live in the appliance core (not in ``harness``) because the DB layer stores them and
nothing below the harness may import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FileKind = Literal["source", "test", "other"]


@dataclass
class FileChange:
    """One file of a commit, as ``git log --numstat`` saw it."""

    path: str
    added: int
    deleted: int
    kind: FileKind = "other"
    old_path: str | None = None  # set for renames
    binary: bool = False


@dataclass
class CommitRecord:
    """One unit of work on the default branch (first-parent walk) and the filter's verdict.

    ``status`` is ``kept`` or ``rejected``; a rejected commit names the first stage that
    rejected it and why, so the attrition funnel is a query.
    """

    sha: str
    parent: str | None
    author_date: str  # ISO 8601 with offset, as git prints it
    author_ts: int  # seconds since the epoch, for chronological cut-offs
    title: str
    message: str
    is_merge: bool = False
    files: list[FileChange] = field(default_factory=list)
    status: str = "kept"
    reject_stage: str | None = None
    reject_reason: str | None = None
    symbols: dict[str, list[str]] = field(default_factory=dict)  # path -> changed symbols
    scores: dict[str, float] = field(default_factory=dict)
    era_key: str | None = None

    @property
    def lines_added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def lines_deleted(self) -> int:
        return sum(f.deleted for f in self.files)

    def reject(self, stage: str, reason: str) -> None:
        self.status = "rejected"
        self.reject_stage = stage
        self.reject_reason = reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommitRecord:
        data = dict(data)
        data["files"] = [FileChange(**f) for f in data.get("files", [])]
        return cls(**data)


@dataclass
class EraRecord:
    """One dependency era: a distinct set of declared requirements and its lock.

    ``key`` is the sha256 of the normalised requirement set, so two commits that declare
    the same requirements share an era whatever their file layout. ``locked_as_of`` and
    ``python`` say which packages, for which interpreter, the lock holds
    (``appliance.packaging.corpus`` chooses them).
    """

    key: str
    requirements: list[str]
    build_requires: list[str]
    first_commit: str
    commits: list[str] = field(default_factory=list)
    lock_path: str | None = None  # relative to the repo package (packages/<name>/)
    lock_sha256: str | None = None
    status: str = "pending"  # pending | locked | unresolvable
    error: str | None = None
    project: str | None = None  # the project's own distribution (canonical): never locked
    requires_python: str | None = None  # as declared at the era's first commit
    python: str | None = None  # X.Y of its lock and environment; None: the repo's
    locked_as_of: str | None = None  # ISO 8601 UTC: packages as uploaded by then; None: newest
    lock_tool: str | None = None  # "uv pip compile" or "pip-compile"
    notes: list[str] = field(default_factory=list)  # fallbacks taken while locking, and why


@dataclass
class RepoRecord:
    """A repo package as the DB knows it."""

    name: str
    origin_url: str
    head_sha: str
    default_branch: str
    python_version: str
    test_cmd: str
    source: str = "added"  # added (connected side) | imported (from a bundle)
    manifest_sha256: str | None = None
    id: int | None = None
    branches: list[str] = field(default_factory=list)  # maintenance branches walked too
