"""SQL for training data: ``training_plans``, ``training_datasets``, ``training_dataset_rows``,
``imported_datasets`` and ``imported_rows``. The only module that writes those tables.

A training plan is stored once per content hash (the artifact without its timestamps), so
asking the same DB twice gives the same row. A dataset row is written in the same
transaction as its per-example rows (``training_dataset_rows``: which triple or imported
row, which task, which content hash), so a holdout can be proved disjoint from it.
``get_dataset`` is the contract with ``cra train``: the folder under ``CRA_HOME`` holding
``train.jsonl``, ``valid.jsonl`` and ``dataset.json``.

This module also streams the rows ``cra curate-data`` reads (``stream_triples``,
``stream_imported``): cursors, never lists, so 200,000 triples cost no more memory than 2,000.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.db.core import Database
from appliance.errors import BadInput, NotFound
from appliance.status import AdapterSlot, ImportFormat, values

SLOTS = tuple(values(AdapterSlot))
IMPORT_FORMATS = tuple(values(ImportFormat))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ plans


@dataclass
class TrainingPlanRow:
    id: int
    content_hash: str
    params: dict[str, Any]
    plan: dict[str, Any]
    created_at: str


def _row_to_plan(row: sqlite3.Row) -> TrainingPlanRow:
    return TrainingPlanRow(id=row["id"], content_hash=row["content_hash"], params=json.loads(row["params"]),
                           plan=json.loads(row["plan"]), created_at=row["created_at"])


def save_training_plan(db: Database, content_hash: str, params: dict[str, Any],
                       plan: dict[str, Any]) -> tuple[TrainingPlanRow, bool]:
    """Store a plan artifact once per content hash; returns (row, newly stored)."""
    with db.write() as c:
        row = c.execute("SELECT * FROM training_plans WHERE content_hash = ?", (content_hash,)).fetchone()
        if row is not None:
            return _row_to_plan(row), False
        cur = c.execute(
            "INSERT INTO training_plans (content_hash, params, plan, created_at) VALUES (?, ?, ?, ?)",
            (content_hash, json.dumps(params, sort_keys=True), json.dumps(plan, sort_keys=True), _now()),
        )
        new_id = int(cur.lastrowid or 0)
    return get_training_plan(db, new_id), True


def get_training_plan(db: Database, plan_id: int) -> TrainingPlanRow:
    row = db.one("SELECT * FROM training_plans WHERE id = ?", (plan_id,))
    if row is None:
        raise NotFound(f"no training plan {plan_id}", hint="make one with 'cra train-plan'")
    return _row_to_plan(row)


def list_training_plans(db: Database) -> list[TrainingPlanRow]:
    return [_row_to_plan(r) for r in db.query("SELECT * FROM training_plans ORDER BY id")]


# ------------------------------------------------------------------------------ datasets


@dataclass
class TrainingDataset:
    """One row of ``training_datasets``: a curated, versioned SFT or DPO dataset.

    ``path`` is a folder relative to ``CRA_HOME`` with ``train.jsonl``, ``valid.jsonl`` and
    ``dataset.json``; ``cutoff_ts`` (epoch seconds): every dated row's commit was authored
    before it; ``counts``: the funnel, rows before and after each filter; ``source_mix``
    ({gold|teacher|self|imported: rows}), ``domain_mix`` ({domain: rows}), ``params`` (replay
    share, caps, thresholds, tokenizer) and ``notes`` (e.g. one domain only) as recorded.
    """

    id: int
    slot: str
    kind: str
    plan_id: int | None
    path: str
    content_hash: str
    cutoff_ts: int
    rows_train: int
    rows_valid: int
    counts: dict[str, Any]
    source_mix: dict[str, int]
    domain_mix: dict[str, int]
    params: dict[str, Any]
    notes: list[str]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row_to_dataset(row: sqlite3.Row) -> TrainingDataset:
    return TrainingDataset(
        id=row["id"], slot=row["slot"], kind=row["kind"], plan_id=row["plan_id"], path=row["path"],
        content_hash=row["content_hash"], cutoff_ts=row["cutoff_ts"], rows_train=row["rows_train"],
        rows_valid=row["rows_valid"], counts=json.loads(row["counts"]), source_mix=json.loads(row["source_mix"]),
        domain_mix=json.loads(row["domain_mix"]), params=json.loads(row["params"]), notes=json.loads(row["notes"]),
        created_at=row["created_at"],
    )


def get_dataset(db: Database, dataset_id: int) -> TrainingDataset:
    """The dataset with this id, or ``NotFound`` naming the command that lists them."""
    row = db.one("SELECT * FROM training_datasets WHERE id = ?", (dataset_id,))
    if row is None:
        raise NotFound(f"no training dataset {dataset_id}", hint="list them with 'cra datasets list'")
    return _row_to_dataset(row)


def list_datasets(db: Database, *, slot: str | None = None, kind: str | None = None) -> list[TrainingDataset]:
    """Datasets oldest first, optionally of one slot and kind."""
    sql, params = "SELECT * FROM training_datasets WHERE 1=1", []
    if slot is not None:
        sql += " AND slot = ?"
        params.append(slot)
    if kind is not None:
        sql += " AND kind = ?"
        params.append(kind)
    return [_row_to_dataset(r) for r in db.query(sql + " ORDER BY id", params)]


def find_dataset(db: Database, slot: str, kind: str, content_hash: str) -> TrainingDataset | None:
    row = db.one("SELECT * FROM training_datasets WHERE slot = ? AND kind = ? AND content_hash = ?",
                 (slot, kind, content_hash))
    return _row_to_dataset(row) if row is not None else None


@dataclass
class DatasetRow:
    """One example of a dataset, for ``training_dataset_rows``: where it came from."""

    split: str  # train | valid
    row_no: int
    source: str
    content_hash: str
    triple_id: int | None = None
    imported_row_id: int | None = None
    repo: str | None = None
    sha: str | None = None
    author_ts: int | None = None
    replay_of: int | None = None


@dataclass
class NewDataset:
    """What ``insert_dataset`` writes (the id comes from the DB)."""

    slot: str
    kind: str
    plan_id: int | None
    content_hash: str
    cutoff_ts: int
    rows_train: int
    rows_valid: int
    counts: dict[str, Any]
    source_mix: dict[str, int]
    domain_mix: dict[str, int]
    params: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.slot not in SLOTS:
            raise BadInput(f"unknown adapter slot '{self.slot}'", hint=f"use one of {', '.join(SLOTS)}")


def insert_dataset(conn: sqlite3.Connection, new: NewDataset, path: str) -> int:
    """Insert the dataset row inside the caller's transaction; returns its id."""
    cur = conn.execute(
        "INSERT INTO training_datasets (slot, kind, plan_id, path, content_hash, cutoff_ts, rows_train,"
        " rows_valid, counts, source_mix, domain_mix, params, notes, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (new.slot, new.kind, new.plan_id, path, new.content_hash, new.cutoff_ts, new.rows_train, new.rows_valid,
         json.dumps(new.counts), json.dumps(new.source_mix, sort_keys=True),
         json.dumps(new.domain_mix, sort_keys=True), json.dumps(new.params, sort_keys=True),
         json.dumps(new.notes), _now()),
    )
    return int(cur.lastrowid or 0)


def set_dataset_path(conn: sqlite3.Connection, dataset_id: int, path: str) -> None:
    conn.execute("UPDATE training_datasets SET path = ? WHERE id = ?", (path, dataset_id))


def insert_dataset_rows(conn: sqlite3.Connection, dataset_id: int, rows: Iterable[DatasetRow]) -> int:
    """Insert the per-example rows inside the caller's transaction; returns how many."""
    cur = conn.executemany(
        "INSERT INTO training_dataset_rows (dataset_id, split, row_no, triple_id, imported_row_id, repo, sha,"
        " author_ts, source, content_hash, replay_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((dataset_id, r.split, r.row_no, r.triple_id, r.imported_row_id, r.repo, r.sha, r.author_ts, r.source,
          r.content_hash, r.replay_of) for r in rows),
    )
    return cur.rowcount


def dataset_rows(db: Database, dataset_id: int) -> list[DatasetRow]:
    return [
        DatasetRow(split=r["split"], row_no=r["row_no"], source=r["source"], content_hash=r["content_hash"],
                   triple_id=r["triple_id"], imported_row_id=r["imported_row_id"], repo=r["repo"], sha=r["sha"],
                   author_ts=r["author_ts"], replay_of=r["replay_of"])
        for r in db.query("SELECT * FROM training_dataset_rows WHERE dataset_id = ? ORDER BY split DESC, row_no",
                          (dataset_id,))
    ]


# ------------------------------------------------------------------------------ what curate-data reads


def stream_triples(db: Database, stage: str, kind: str, *, before_ts: int | None = None) -> Iterator[sqlite3.Row]:
    """A stage's triples of one kind in time order (author date, then id), lazily: the order
    the ``triples_stage_kind_time`` index holds them in, so SQLite never sorts the rows.

    ``models``: the distinct models of the runs a run-derived triple came from, comma
    separated ('' for gold triples), so a caller can tell teacher from self. ``before_ts``
    keeps commits authored strictly before it.
    """
    cols = ("t.id, r.name AS repo, t.sha, t.author_ts, t.origin, t.prompt, t.completion, t.chosen, t.rejected,"
            " t.meta, t.content_hash,"
            " CASE WHEN t.source_runs = '[]' THEN '' ELSE (SELECT group_concat(DISTINCT ru.model)"
            "   FROM json_each(t.source_runs) j JOIN runs ru ON ru.id = j.value) END AS models")
    sql = (f"SELECT {cols} FROM triples t JOIN repos r ON r.id = t.repo_id"
           " WHERE t.stage = ? AND t.kind = ?")
    params: list[Any] = [stage, kind]
    if before_ts is not None:
        sql += " AND t.author_ts < ?"
        params.append(int(before_ts))
    sql += " ORDER BY t.author_ts, t.id"
    cur = db.conn.execute(sql, params)
    while batch := cur.fetchmany(1024):
        yield from batch


def count_triples(db: Database, stage: str, kind: str) -> tuple[int, int | None]:
    """(rows, newest author date) of a stage and kind, before any filter."""
    row = db.one("SELECT COUNT(*), MAX(author_ts) FROM triples WHERE stage = ? AND kind = ?", (stage, kind))
    return (int(row[0]), row[1]) if row else (0, None)


# ------------------------------------------------------------------------------ imports


@dataclass
class ImportedDataset:
    id: int
    name: str
    format: str
    slot: str
    license: str
    source_file: str
    sha256: str
    rows: int
    skipped: dict[str, int]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row_to_import(row: sqlite3.Row) -> ImportedDataset:
    return ImportedDataset(id=row["id"], name=row["name"], format=row["format"], slot=row["slot"],
                           license=row["license"], source_file=row["source_file"], sha256=row["sha256"],
                           rows=row["rows"], skipped=json.loads(row["skipped"]), created_at=row["created_at"])


def list_imports(db: Database, *, slot: str | None = None) -> list[ImportedDataset]:
    sql, params = "SELECT * FROM imported_datasets", []
    if slot is not None:
        sql += " WHERE slot = ?"
        params.append(slot)
    return [_row_to_import(r) for r in db.query(sql + " ORDER BY id", params)]


def find_import(db: Database, *, name: str | None = None, sha256: str | None = None, fmt: str | None = None,
                slot: str | None = None) -> ImportedDataset | None:
    if name is not None:
        row = db.one("SELECT * FROM imported_datasets WHERE name = ?", (name,))
    else:
        row = db.one("SELECT * FROM imported_datasets WHERE sha256 = ? AND format = ? AND slot = ?",
                     (sha256, fmt, slot))
    return _row_to_import(row) if row is not None else None


@dataclass
class ImportedRow:
    line_no: int
    prompt: list[dict[str, str]]
    completion: list[dict[str, str]]
    meta: dict[str, Any]
    content_hash: str


def insert_import(conn: sqlite3.Connection, *, name: str, fmt: str, slot: str, license: str, source_file: str,
                  sha256: str) -> int:
    """Open an import inside the caller's transaction; rows follow, then ``close_import``."""
    if fmt not in IMPORT_FORMATS:
        raise BadInput(f"unknown import format '{fmt}'", hint=f"use one of {', '.join(IMPORT_FORMATS)}")
    cur = conn.execute(
        "INSERT INTO imported_datasets (name, format, slot, license, source_file, sha256, rows, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, 0, ?)", (name, fmt, slot, license, source_file, sha256, _now()))
    return int(cur.lastrowid or 0)


def insert_imported_rows(conn: sqlite3.Connection, dataset_id: int, rows: Iterable[ImportedRow]) -> int:
    cur = conn.executemany(
        "INSERT INTO imported_rows (dataset_id, line_no, prompt, completion, meta, content_hash)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        ((dataset_id, r.line_no, json.dumps(r.prompt, ensure_ascii=False), json.dumps(r.completion, ensure_ascii=False),
          json.dumps(r.meta, ensure_ascii=False, sort_keys=True), r.content_hash) for r in rows),
    )
    return cur.rowcount


def close_import(conn: sqlite3.Connection, dataset_id: int, rows: int, skipped: dict[str, int]) -> None:
    conn.execute("UPDATE imported_datasets SET rows = ?, skipped = ? WHERE id = ?",
                 (rows, json.dumps(skipped, sort_keys=True), dataset_id))


def stream_imported(db: Database, slot: str) -> Iterator[sqlite3.Row]:
    """The imported rows of a slot, import by import, line by line, lazily."""
    cur = db.conn.execute(
        "SELECT i.id, i.dataset_id, d.name, d.license, i.line_no, i.prompt, i.completion, i.meta, i.content_hash"
        " FROM imported_rows i JOIN imported_datasets d ON d.id = i.dataset_id WHERE d.slot = ?"
        " ORDER BY i.dataset_id, i.line_no", (slot,))
    while batch := cur.fetchmany(1024):
        yield from batch


def count_imported_rows(db: Database, slot: str) -> int:
    row = db.one("SELECT COALESCE(SUM(rows), 0) FROM imported_datasets WHERE slot = ?", (slot,))
    return int(row[0]) if row else 0


def count_imported(db: Database) -> dict[str, dict[str, int]]:
    """{slot: {import name: rows}} of every import."""
    out: dict[str, dict[str, int]] = {}
    for r in db.query("SELECT slot, name, rows FROM imported_datasets ORDER BY slot, name"):
        out.setdefault(r["slot"], {})[r["name"]] = r["rows"]
    return out


def triple_sources(db: Database, *, repos: tuple[str, ...] | None = None) -> list[sqlite3.Row]:
    """Triples counted by (stage, kind, repo, models): ``models`` as in ``stream_triples``."""
    sql = ("SELECT t.stage, t.kind, r.name AS repo,"
           " CASE WHEN t.source_runs = '[]' THEN '' ELSE (SELECT group_concat(DISTINCT ru.model)"
           "   FROM json_each(t.source_runs) j JOIN runs ru ON ru.id = j.value) END AS models,"
           " COUNT(*) AS n FROM triples t JOIN repos r ON r.id = t.repo_id")
    params: list[Any] = []
    if repos is not None:
        sql += f" WHERE r.name IN ({', '.join('?' for _ in repos) or 'NULL'})"
        params += list(repos)
    return db.query(sql + " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4", params)
