"""The Index stage: a symbol index of a repository at a commit, in SQLite with FTS5.

Every task of a repo runs at a different parent commit, and consecutive commits share
almost every file. So the index is keyed by git blob id, which ``git ls-tree`` gives for
free and which changes exactly when a file's content does: indexing commit N+1 after
commit N parses only the blobs N+1 introduced. A commit is then just a *snapshot*, a
set of (path, blob) rows; commits whose Python files are identical share one snapshot.

The database is a cache (``var/index/<repo>.db``, see ``index_path``), separate from the
raw DB: deleting it loses nothing but time, and a schema change simply rebuilds it.

Search scores with BM25 over the asked commit's snapshot alone (temp FTS5 tables that
follow the snapshot, swapping only the documents of changed files), never over every file
version the cache holds: a task's retrieval, and every prompt built from it, must not
depend on which other commits happen to be indexed.

Files that do not parse are recorded with the error and have no symbols; they never
stop indexing.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import subprocess
import time
import tokenize
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from appliance.db.core import Database
from appliance.errors import BadInput, GitError, NotFound
from harness.git import SAFE_CONFIG, git, git_env
from harness.pysource import (
    ImportSpec,
    Symbol,
    import_candidates,
    module_name,
    package_of,
    parse_module,
)

if TYPE_CHECKING:
    from appliance.config import Home

SCHEMA_VERSION = 2
MAX_FILE_BYTES = 2_000_000  # larger .py files are generated data, not code to plan against
MAX_DOC_CHARS = 4_000
_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_CHUNK = 500  # host parameters per IN (...) query, well under SQLite's limit

# porter: "parsing" finds "parse"; tokenchars '_': identifiers stay whole tokens, and
# index_text() adds their snake/Camel parts itself, so both forms match.
_TOKENIZE = "porter unicode61 remove_diacritics 2 tokenchars '_'"

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE paths(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE blobs(
    id INTEGER PRIMARY KEY,
    sha TEXT NOT NULL UNIQUE,
    ok INTEGER NOT NULL,           -- 1 parsed, 0 recorded as unparseable
    error TEXT NOT NULL,
    lines INTEGER NOT NULL,
    docstring TEXT NOT NULL,       -- module docstring
    imports TEXT NOT NULL          -- JSON [[module, level, [names...]], ...], path-independent
);
CREATE TABLE symbols(
    id INTEGER PRIMARY KEY,
    blob INTEGER NOT NULL REFERENCES blobs(id),
    qualname TEXT NOT NULL,
    kind TEXT NOT NULL,
    lineno INTEGER NOT NULL,
    end_lineno INTEGER NOT NULL,
    signature TEXT NOT NULL,
    docstring TEXT NOT NULL
);
CREATE INDEX symbols_by_blob ON symbols(blob);
CREATE TABLE snapshots(id INTEGER PRIMARY KEY, digest TEXT NOT NULL UNIQUE, n_files INTEGER NOT NULL);
CREATE TABLE snapshot_files(
    snapshot INTEGER NOT NULL,
    path INTEGER NOT NULL,
    blob INTEGER NOT NULL,
    PRIMARY KEY (snapshot, path)
) WITHOUT ROWID;
CREATE INDEX snapshot_files_by_blob ON snapshot_files(snapshot, blob);
CREATE TABLE commits(
    sha TEXT PRIMARY KEY,
    snapshot INTEGER NOT NULL REFERENCES snapshots(id),
    indexed_at REAL NOT NULL
);
"""
# Search runs over one snapshot's documents only, held in temp (in-memory) FTS5 tables that
# follow the snapshot asked for: BM25's document frequencies and lengths are then those of
# that commit, so a task's retrieval (and the prompts built from it) does not change as
# other commits of the repo are indexed. Moving to the next commit's snapshot swaps only the
# documents of the files that changed.
_SEARCH_SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS temp.q_symbol USING fts5(name, signature, doc, tokenize="{_TOKENIZE}");
CREATE VIRTUAL TABLE IF NOT EXISTS temp.q_path USING fts5(path, tokenize="{_TOKENIZE}");
CREATE VIRTUAL TABLE IF NOT EXISTS temp.q_module USING fts5(doc, tokenize="{_TOKENIZE}");
"""
_TABLES = (
    "meta", "paths", "blobs", "symbols", "snapshots", "snapshot_files", "commits",
    "symbol_fts", "path_fts", "module_fts",  # version 1 kept all history's documents in FTS
)

# BM25 column weights for the symbol documents: a hit on the name means far more than one in a docstring.
SYMBOL_WEIGHTS = (6.0, 2.0, 1.0)


@dataclass(frozen=True)
class IndexStats:
    """What one ``index_commit`` did.

    ``parsed`` files had a blob new to the index (read and parsed now, successfully or
    not); ``reused`` files had a blob already indexed; ``parsed + reused`` is the number
    of Python files in the commit. ``failed`` counts the commit's files recorded as
    unparseable, new or reused.
    """

    parsed: int
    reused: int
    failed: int
    seconds: float


@dataclass(frozen=True)
class IndexedFile:
    path: str
    module: str
    blob: str
    ok: bool
    error: str  # "" when ok
    lines: int
    docstring: str  # module docstring


@dataclass(frozen=True)
class SymbolAt:
    path: str
    symbol: Symbol


@dataclass(frozen=True)
class Hit:
    """One BM25 hit; ``score`` is positive, higher is better. ``symbol`` is None for a file."""

    path: str
    score: float
    symbol: Symbol | None = None


@dataclass(frozen=True)
class SearchHits:
    paths: list[Hit]  # the query matched the file's path
    modules: list[Hit]  # the query matched the module docstring
    symbols: list[Hit]  # the query matched a symbol's name, signature or docstring


def index_path(home: Home, repo: str) -> Path:
    """Where a repo's index cache lives: ``var/index/<repo>.db``."""
    return home.var / "index" / f"{repo}.db"


def _chunks(ids: set[int]) -> Iterator[list[int]]:
    items = sorted(ids)
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _marks(chunk: list[int]) -> str:
    return ",".join("?" * len(chunk))


# --- tokenising (shared with harness/retrieve.py so documents and queries agree) -------------

_WORD = re.compile(r"\w+", re.UNICODE)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_]+", re.UNICODE)


def split_identifier(word: str) -> list[str]:
    """``parse_iso_date`` -> parse, iso, date; ``HTTPServerError`` -> http, server, error."""
    parts: list[str] = []
    for chunk in word.split("_"):
        if chunk:
            parts.extend(p.lower() for p in _CAMEL.findall(chunk))
    return parts


def word_tokens(text: str) -> Iterator[tuple[str, list[str]]]:
    """Each word of ``text`` as (whole word lowercased, its identifier parts)."""
    for match in _WORD.finditer(text):
        word = match.group()
        yield word.lower(), split_identifier(word)


def index_text(text: str) -> str:
    """Text as the FTS table should see it: every identifier whole *and* split."""
    out: list[str] = []
    for whole, parts in word_tokens(text):
        out.append(whole)
        if parts != [whole]:
            out.extend(parts)
    return " ".join(out)


# --- the index --------------------------------------------------------------------------------


class SymbolIndex:
    """A per-repo symbol index. Not shared between threads; one per process is fine."""

    def __init__(self, db_path: Path | str):
        self.path = Path(db_path)
        try:
            # The raw DB's connection rules (WAL, busy timeout, BEGIN IMMEDIATE writes),
            # without its migrations: this file is a cache with a schema of its own.
            self.db = Database(self.path, migrate=False)
            self.conn = self.db.conn
            self.conn.execute("PRAGMA foreign_keys=OFF")  # a rebuild drops tables in any order
            self.conn.execute("PRAGMA temp_store=MEMORY")  # the search tables (see _SEARCH_SCHEMA)
            self._loaded: int | None = None  # the snapshot the search tables hold
            self._loaded_docs: tuple[set[int], set[int]] = (set(), set())  # its path and blob ids
            self._ensure_schema()
        except (sqlite3.DatabaseError, BadInput) as exc:
            raise BadInput(
                f"cannot open the symbol index: {exc}",
                path=self.path,
                hint="it is only a cache: delete the file and index again",
            ) from exc

    # -- plumbing

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.db.write()

    def _ensure_schema(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        # A cache from another schema version (or a new file): rebuild from scratch.
        with self._write() as c:
            for table in _TABLES:
                c.execute(f"DROP TABLE IF EXISTS {table}")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            c.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- indexing

    def index_commit(self, repo_dir: Path | str, sha: str) -> IndexStats:
        """Index the Python files of ``sha``, parsing only blobs the index has not seen."""
        started = time.perf_counter()
        # A full sha needs no rev-parse (a process start is most of an incremental index);
        # if it names no commit, ls-tree below fails and says so.
        full = sha.lower() if _FULL_SHA.fullmatch(sha) else resolve_commit(repo_dir, sha)
        row = self.conn.execute(
            "SELECT s.id, s.n_files FROM commits c JOIN snapshots s ON s.id = c.snapshot WHERE c.sha = ?",
            (full,),
        ).fetchone()
        if row is not None:
            return IndexStats(0, row[1], self._failed_in(row[0]), time.perf_counter() - started)

        try:
            entries = list_python_files(repo_dir, f"{full}^{{commit}}")  # a tree or blob sha fails
        except GitError as exc:
            raise NotFound(f"no commit {sha!r} in {repo_dir}", path=repo_dir,
                           hint="check the sha, or fetch the repo again") from exc
        known = self._blob_ids({blob for _, blob in entries})
        new = sorted({blob for _, blob in entries if blob not in known})
        parsed = {blob: _parse_blob(data) for blob, data in read_blobs(repo_dir, new)}

        digest = _snapshot_digest(entries)
        with self._write() as c:
            # Another process may have indexed some of these blobs meanwhile: ask again.
            known = self._blob_ids({blob for _, blob in entries})
            for blob in new:
                if blob not in known:
                    known[blob] = self._insert_blob(c, blob, parsed[blob])
            snapshot = self._snapshot_for(c, digest, entries, known)
            c.execute(
                "INSERT OR REPLACE INTO commits(sha, snapshot, indexed_at) VALUES (?, ?, ?)",
                (full, snapshot, time.time()),
            )
            failed = self._failed_in(snapshot)
        return IndexStats(len([1 for _, b in entries if b in parsed]),
                          len([1 for _, b in entries if b not in parsed]),
                          failed, time.perf_counter() - started)

    def _blob_ids(self, shas: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        items = list(shas)
        for i in range(0, len(items), _CHUNK):
            chunk = items[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for blob_id, sha in self.conn.execute(f"SELECT id, sha FROM blobs WHERE sha IN ({marks})", chunk):
                out[sha] = blob_id
        return out

    def _insert_blob(self, c: sqlite3.Connection, sha: str, info: _ParsedBlob) -> int:
        cur = c.execute(
            "INSERT INTO blobs(sha, ok, error, lines, docstring, imports) VALUES (?, ?, ?, ?, ?, ?)",
            (sha, int(info.ok), info.error, info.lines, info.docstring,
             json.dumps([[s.module, s.level, list(s.names)] for s in info.imports])),
        )
        blob_id = int(cur.lastrowid or 0)
        c.executemany(
            "INSERT INTO symbols(blob, qualname, kind, lineno, end_lineno, signature, docstring)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(blob_id, sym.qualname, sym.kind, sym.lineno, sym.end_lineno, sym.signature, sym.docstring)
             for sym in info.symbols],
        )
        return blob_id

    def _path_ids(self, c: sqlite3.Connection, paths: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(paths), _CHUNK):
            chunk = paths[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            out.update({p: pid for pid, p in c.execute(f"SELECT id, path FROM paths WHERE path IN ({marks})", chunk)})
        for p in paths:
            if p not in out:
                out[p] = int(c.execute("INSERT INTO paths(path) VALUES (?)", (p,)).lastrowid or 0)
        return out

    def _snapshot_for(
        self, c: sqlite3.Connection, digest: str, entries: list[tuple[str, str]], blob_ids: dict[str, int]
    ) -> int:
        row = c.execute("SELECT id FROM snapshots WHERE digest = ?", (digest,)).fetchone()
        if row is not None:
            return int(row[0])
        snapshot = int(
            c.execute("INSERT INTO snapshots(digest, n_files) VALUES (?, ?)", (digest, len(entries))).lastrowid or 0
        )
        path_ids = self._path_ids(c, [p for p, _ in entries])
        c.executemany(
            "INSERT INTO snapshot_files(snapshot, path, blob) VALUES (?, ?, ?)",
            [(snapshot, path_ids[p], blob_ids[b]) for p, b in entries],
        )
        return snapshot

    def _failed_in(self, snapshot: int) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM snapshot_files f JOIN blobs b ON b.id = f.blob WHERE f.snapshot = ? AND b.ok = 0",
            (snapshot,),
        ).fetchone()[0])

    # -- reading

    def has_commit(self, sha: str) -> bool:
        try:
            self._snapshot(sha)
        except NotFound:
            return False
        return True

    def _load_snapshot(self, snapshot: int) -> None:
        """Make the temp search tables hold exactly ``snapshot``'s documents."""
        if self._loaded == snapshot:
            return
        c = self.conn
        rows = c.execute("SELECT path, blob FROM snapshot_files WHERE snapshot = ?", (snapshot,)).fetchall()
        paths, blobs = {int(r[0]) for r in rows}, {int(r[1]) for r in rows}
        old_paths, old_blobs = self._loaded_docs
        own = not c.in_transaction  # temp tables only: no lock on the index file is taken
        if own:
            c.execute("BEGIN")
        try:
            if self._loaded is None:
                for stmt in _SEARCH_SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                for table in ("q_symbol", "q_path", "q_module"):
                    c.execute(f"DELETE FROM temp.{table}")
            for chunk in _chunks(old_paths - paths):
                c.execute(f"DELETE FROM temp.q_path WHERE rowid IN ({_marks(chunk)})", chunk)
            for chunk in _chunks(old_blobs - blobs):
                c.execute(f"DELETE FROM temp.q_module WHERE rowid IN ({_marks(chunk)})", chunk)
                c.execute(f"DELETE FROM temp.q_symbol WHERE rowid IN"
                          f" (SELECT id FROM symbols WHERE blob IN ({_marks(chunk)}))", chunk)
            for chunk in _chunks(paths - old_paths):
                found = c.execute(f"SELECT id, path FROM paths WHERE id IN ({_marks(chunk)})", chunk)
                c.executemany("INSERT INTO temp.q_path(rowid, path) VALUES (?, ?)",
                              [(pid, index_text(_path_words(p))) for pid, p in found])
            for chunk in _chunks(blobs - old_blobs):
                found = c.execute(
                    f"SELECT id, docstring FROM blobs WHERE docstring != '' AND id IN ({_marks(chunk)})", chunk)
                c.executemany("INSERT INTO temp.q_module(rowid, doc) VALUES (?, ?)",
                              [(bid, index_text(doc)) for bid, doc in found])
                found = c.execute(
                    f"SELECT id, qualname, signature, docstring FROM symbols WHERE blob IN ({_marks(chunk)})", chunk)
                c.executemany("INSERT INTO temp.q_symbol(rowid, name, signature, doc) VALUES (?, ?, ?, ?)",
                              [(sid, index_text(q), index_text(sig), index_text(doc)) for sid, q, sig, doc in found])
            if own:
                c.execute("COMMIT")
        except BaseException:
            if own:
                c.execute("ROLLBACK")
            self._loaded, self._loaded_docs = None, (set(), set())
            raise
        self._loaded, self._loaded_docs = snapshot, (paths, blobs)

    def _snapshot(self, sha: str) -> int:
        row = self.conn.execute("SELECT snapshot FROM commits WHERE sha = ?", (sha,)).fetchone()
        if row is None and len(sha) >= 4 and re.fullmatch(r"[0-9a-fA-F]+", sha):
            rows = self.conn.execute(
                "SELECT snapshot FROM commits WHERE sha >= ? AND sha < ? LIMIT 2", (sha.lower(), sha.lower() + "g")
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise NotFound(
                f"commit {sha} is not in the symbol index",
                path=self.path,
                hint="index it first (SymbolIndex.index_commit)",
            )
        return int(row[0])

    def files(self, sha: str) -> list[IndexedFile]:
        """The Python files of an indexed commit, by path."""
        rows = self.conn.execute(
            "SELECT p.path, b.sha, b.ok, b.error, b.lines, b.docstring FROM snapshot_files f"
            " JOIN paths p ON p.id = f.path JOIN blobs b ON b.id = f.blob WHERE f.snapshot = ? ORDER BY p.path",
            (self._snapshot(sha),),
        ).fetchall()
        return [IndexedFile(path, module_name(path), blob, bool(ok), err, lines, doc)
                for path, blob, ok, err, lines, doc in rows]

    def symbols(self, sha: str, path: str | None = None) -> list[SymbolAt]:
        """Symbols of an indexed commit (or of one file of it), by path then line."""
        sql = (
            "SELECT p.path, s.qualname, s.kind, s.lineno, s.end_lineno, s.signature, s.docstring"
            " FROM snapshot_files f JOIN paths p ON p.id = f.path JOIN symbols s ON s.blob = f.blob"
            " WHERE f.snapshot = ?"
        )
        params: list[object] = [self._snapshot(sha)]
        if path is not None:
            sql += " AND p.path = ?"
            params.append(path)
        sql += " ORDER BY p.path, s.lineno, s.id"
        return [SymbolAt(r[0], Symbol(*r[1:])) for r in self.conn.execute(sql, params)]

    def import_graph(self, sha: str) -> dict[str, set[str]]:
        """Every Python file of the commit -> the in-repo files it imports.

        ``from pkg import x`` points at ``pkg/x.py`` when that module exists, else at
        ``pkg/__init__.py``. Imports are matched to files by module name (``src/``
        layout understood); then, from a folder that is not a package (scripts, pytest's
        rootdir-style tests), by a sibling file (``tests/t.py``: ``import helpers`` ->
        ``tests/helpers.py``); then by a unique dotted suffix for other layouts
        (``lib/pkg/m.py`` answers ``import pkg.m``). A bare ``import typing`` never
        resolves to some ``pkg/typing.py``. Third-party imports are dropped.
        """
        rows = self.conn.execute(
            "SELECT p.path, b.imports FROM snapshot_files f JOIN paths p ON p.id = f.path"
            " JOIN blobs b ON b.id = f.blob WHERE f.snapshot = ?",
            (self._snapshot(sha),),
        ).fetchall()
        resolver = _ModuleResolver([path for path, _ in rows])
        graph: dict[str, set[str]] = {}
        for path, imports_json in rows:
            package = package_of(path)
            targets: set[str] = set()
            for module, level, names in json.loads(imports_json):
                spec = ImportSpec(module, level, tuple(names))
                for alternatives in import_candidates(spec, package):
                    for name in alternatives:
                        found = resolver.find(name, path)
                        if found is not None:
                            if found != path:
                                targets.add(found)
                            break
            graph[path] = targets
        return graph

    def search(self, sha: str, query: str, k: int = 50) -> SearchHits:
        """BM25 hits of an FTS5 ``query`` among the commit's paths, module docs and symbols.

        ``query`` is FTS5 syntax; build it with ``harness.retrieve.build_query`` so user
        text can never break it. A malformed query is a ``BadInput``.
        """
        snapshot = self._snapshot(sha)
        self._load_snapshot(snapshot)
        try:
            path_rows = self.conn.execute(
                "SELECT p.path, -bm25(q_path) AS score FROM q_path"
                " JOIN paths p ON p.id = q_path.rowid WHERE q_path MATCH ? ORDER BY score DESC, p.path LIMIT ?",
                (query, k),
            ).fetchall()
            module_rows = self.conn.execute(
                "SELECT p.path, -bm25(q_module) AS score FROM q_module"
                " JOIN snapshot_files f ON f.snapshot = ? AND f.blob = q_module.rowid"
                " JOIN paths p ON p.id = f.path WHERE q_module MATCH ? ORDER BY score DESC, p.path LIMIT ?",
                (snapshot, query, k),
            ).fetchall()
            w = SYMBOL_WEIGHTS
            symbol_rows = self.conn.execute(
                "SELECT p.path, s.qualname, s.kind, s.lineno, s.end_lineno, s.signature, s.docstring,"
                f" -bm25(q_symbol, {w[0]}, {w[1]}, {w[2]}) AS score FROM q_symbol"
                " JOIN symbols s ON s.id = q_symbol.rowid"
                " JOIN snapshot_files f ON f.snapshot = ? AND f.blob = s.blob"
                " JOIN paths p ON p.id = f.path WHERE q_symbol MATCH ?"
                " ORDER BY score DESC, p.path, s.lineno LIMIT ?",
                (snapshot, query, k),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            raise BadInput(f"bad search query {query!r}: {exc}", hint="build it with retrieve.build_query") from exc
        return SearchHits(
            paths=[Hit(p, float(s)) for p, s in path_rows],
            modules=[Hit(p, float(s)) for p, s in module_rows],
            symbols=[Hit(r[0], float(r[7]), Symbol(*r[1:7])) for r in symbol_rows],
        )


class _ModuleResolver:
    """Module name -> path for one snapshot (see ``SymbolIndex.import_graph`` for the rules)."""

    def __init__(self, paths: list[str]):
        self.exact: dict[str, str] = {}
        self.packages = {p.rpartition("/")[0] for p in paths if p.rpartition("/")[2] == "__init__.py"}
        suffixes: dict[str, set[str]] = {}
        # Sorted so the choice between colliding names (src/pkg and pkg both present) is stable.
        for path in sorted(paths):
            name = module_name(path)
            if not name:
                continue
            self.exact.setdefault(name, path)
            parts = name.split(".")
            for i in range(1, len(parts) - 1):  # dotted suffixes only: "pkg.m", never "m"
                suffixes.setdefault(".".join(parts[i:]), set()).add(path)
        self.suffix = {s: next(iter(ps)) for s, ps in suffixes.items() if len(ps) == 1}

    def find(self, name: str, importer: str) -> str | None:
        found = self.exact.get(name)
        if found is not None:
            return found
        folder = importer.rpartition("/")[0]
        if folder and folder not in self.packages:
            # Python puts a script's own folder first on sys.path (and pytest does the same
            # for test folders without __init__.py), so siblings import by bare name.
            found = self.exact.get(f"{module_name(folder + '/__init__.py')}.{name}")
            if found is not None:
                return found
        return self.suffix.get(name)


# --- git plumbing -------------------------------------------------------------------------------


def resolve_commit(repo_dir: Path | str, sha: str) -> str:
    """The full sha of a commit-ish, or ``NotFound`` naming the repo."""
    try:
        return git(repo_dir, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}").strip()
    except GitError as exc:
        raise NotFound(f"no commit {sha!r} in {repo_dir}", path=repo_dir,
                       hint="check the sha, or fetch the repo again") from exc


def list_python_files(repo_dir: Path | str, sha: str) -> list[tuple[str, str]]:
    """(path, blob sha) of every regular ``.py`` file at a commit, sorted by path.

    Symlinks (mode 120000: the blob is the link target) and submodules are skipped.
    """
    out = git(repo_dir, "ls-tree", "-r", "-z", "--full-tree", sha)
    entries: list[tuple[str, str]] = []
    for record in out.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, kind, blob = meta.split(" ")
        if kind == "blob" and mode in ("100644", "100755") and path.endswith(".py"):
            entries.append((path, blob))
    entries.sort()
    return entries


def read_blobs(repo_dir: Path | str, shas: list[str]) -> Iterator[tuple[str, bytes | None]]:
    """Blob contents through one ``git cat-file --batch`` process (None: missing object)."""
    if not shas:
        return
    cmd = ["git", *SAFE_CONFIG, "-C", str(repo_dir), "cat-file", "--batch"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=git_env())
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for sha in shas:
            # One request, one answer: git flushes after each object, so this never deadlocks.
            proc.stdin.write(f"{sha}\n".encode())
            proc.stdin.flush()
            header = proc.stdout.readline().decode("utf-8", "replace").split()
            if len(header) != 3:  # "<sha> missing"
                yield sha, None
                continue
            size = int(header[2])
            data = proc.stdout.read(size)
            proc.stdout.read(1)  # the newline after the content
            yield sha, data
    except (BrokenPipeError, ValueError) as exc:
        raise GitError(f"git cat-file --batch stopped: {exc}", path=repo_dir) from exc
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.wait()


# --- parsing one blob -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ParsedBlob:
    ok: bool
    error: str
    lines: int
    docstring: str
    symbols: list[Symbol]
    imports: list[ImportSpec]


def _decode(data: bytes) -> str:
    """Source bytes to text the way Python would: BOM and ``coding:`` cookie honoured."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        encoding = "utf-8"
    try:
        return data.decode(encoding, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _parse_blob(data: bytes | None) -> _ParsedBlob:
    if data is None:
        return _ParsedBlob(False, "blob missing from the repository", 0, "", [], [])
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if len(data) > MAX_FILE_BYTES:
        return _ParsedBlob(False, f"skipped: {len(data)} bytes is over {MAX_FILE_BYTES}", lines, "", [], [])
    try:
        mod = parse_module(_decode(data))
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        return _ParsedBlob(False, f"{where}{exc.msg}", lines, "", [], [])
    return _ParsedBlob(True, "", lines, mod.docstring[:MAX_DOC_CHARS], mod.symbols, mod.imports)


def _snapshot_digest(entries: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for path, blob in entries:
        h.update(f"{path}\0{blob}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _path_words(path: str) -> str:
    """A path as words: ``src/attr/_make.py`` -> ``src attr _make`` (the .py adds nothing)."""
    return re.sub(r"\.pyi?$", "", path).replace("/", " ")
