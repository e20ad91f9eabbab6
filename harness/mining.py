"""Mine a repository's default branch into commit records, in two stages.

A unit of work is what landed on the branch: the walk follows first parents only, so a
squash or direct commit is one candidate and a pull-request merge is one candidate (its
diff against the first parent, its PR title as the instruction); the work-in-progress
commits inside a merged branch are never visited.

Stage 1 is one ``git log --numstat`` pass over every commit, judged by the cheap rules of
``harness.filters`` (message, size, tests). Stage 2 reads file contents, so it sees only
the survivors: every changed Python file must parse before and after the commit, and the
functions and classes the diff touches are recorded. Every commit comes back with a
verdict (kept, or the first stage that rejected it and why), so the funnel is a query.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import MiningConfig
from appliance.db.corpus import STAGES
from appliance.errors import GitError, NotFound
from appliance.records import CommitRecord, FileChange
from harness import filters, pyparse
from harness.git import cat_files, git, git_bytes
from harness.pytest_config import CONFIG_FILES, PytestSettings, settings_from_blobs
from harness.pytest_config import DEFAULT as DEFAULT_SETTINGS

Progress = Callable[[int, int], None]
MESSAGE, SIZE, TESTS, PARSE = STAGES  # the names the DB and the funnel use

# One header per commit, NUL-separated fields; %x1e marks where a commit starts. %B is
# the raw message, which may hold anything but a NUL.
_FIELDS = ("%H", "%P", "%aI", "%at", "%an", "%ae", "%B")
_FORMAT = "%x1e" + "%x00".join(_FIELDS) + "%x00"
_MARK = b"\x1e"


def log_args(*revs: str) -> list[str]:
    """The one ``git log`` of stage 1 (the benchmark times the same walk without parsing).

    ``--diff-merges=first-parent`` gives a merge's change against the branch it landed
    on; ``-M`` reports a rename as one file, with its old path, instead of a delete and an
    add; ``-z`` keeps odd paths verbatim.
    """
    return [
        "log", "--first-parent", "--diff-merges=first-parent", "--numstat", "-M", "-z",
        "--no-color", "--no-ext-diff", f"--format={_FORMAT}", *revs, "--",
    ]


@dataclass
class LoggedCommit:
    """One commit as stage 1 saw it, before the rules."""

    sha: str
    parents: list[str]
    author_date: str
    author_ts: int
    author: str
    raw_message: str
    files: list[FileChange] = field(default_factory=list)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def parse_log(out: bytes) -> list[LoggedCommit]:
    """Parse the output of ``git log`` with ``log_args`` (newest first, as git prints it).

    Tokens are NUL-terminated. A header is a fixed number of fields; after it come numstat
    entries ``added\\tdeleted\\tpath``, or for a rename ``added\\tdeleted\\t`` followed by
    the old and the new path as two more tokens. A binary file has ``-`` for both counts.
    """
    tokens = out.split(b"\0")
    n = len(tokens)
    commits: list[LoggedCommit] = []
    i = 0
    while i < n:
        tok = tokens[i]
        if not tok.startswith(_MARK):
            if tok.strip():
                raise GitError(f"unexpected git log output near {tok[:60]!r}")
            i += 1
            continue
        if i + len(_FIELDS) > n:
            raise GitError("truncated git log output")
        sha = _text(tok[1:])
        parents_b, date_b, ts_b, name_b, email_b, body_b = tokens[i + 1 : i + len(_FIELDS)]
        i += len(_FIELDS)
        raw = LoggedCommit(
            sha=sha,
            parents=_text(parents_b).split(),
            author_date=_text(date_b),
            author_ts=int(ts_b or 0),
            author=f"{_text(name_b)} <{_text(email_b)}>",
            raw_message=_text(body_b),
        )
        while i < n and not tokens[i].startswith(_MARK):
            entry = tokens[i].lstrip(b"\n")
            i += 1
            if not entry:
                continue
            try:
                added_b, deleted_b, path_b = entry.split(b"\t", 2)
            except ValueError as exc:
                raise GitError(f"unexpected numstat entry {entry[:60]!r} in {sha}") from exc
            old_path: str | None = None
            if not path_b:  # a rename: old and new path follow as their own tokens
                if i + 2 > n:
                    raise GitError(f"truncated rename entry in {sha}")
                old_path, path = _text(tokens[i]), _text(tokens[i + 1])
                i += 2
            else:
                path = _text(path_b)
            binary = added_b == b"-"
            raw.files.append(
                FileChange(
                    path=path,
                    added=0 if binary else int(added_b),
                    deleted=0 if binary else int(deleted_b),
                    kind=filters.classify_path(path),
                    old_path=old_path,
                    binary=binary,
                )
            )
        commits.append(raw)
    return commits


def judge_stage1(
    raw: LoggedCommit, config: MiningConfig, settings: PytestSettings = DEFAULT_SETTINGS
) -> CommitRecord:
    """A record for one commit with the verdict of the cheap stages (message, size, tests).

    ``settings`` are the project's pytest settings at the commit: what it collects as a
    test module is test-side, and counts for the tests stage.
    """
    record = judge_message(raw, config)
    if record.status == "kept":
        judge_change(record, raw, config, settings)
    return record


def judge_message(raw: LoggedCommit, config: MiningConfig) -> CommitRecord:
    """A record for one commit with the message stage's verdict."""
    is_merge = len(raw.parents) > 1
    title, message = filters.split_message(raw.raw_message, is_merge=is_merge)
    record = CommitRecord(
        sha=raw.sha,
        parent=raw.parents[0] if raw.parents else None,
        author_date=raw.author_date,
        author_ts=raw.author_ts,
        title=title,
        message=message,
        is_merge=is_merge,
        files=raw.files,
    )
    msg = filters.Message(
        title=title,
        body=message,
        raw_title=raw.raw_message.strip().split("\n", 1)[0],
        author=raw.author,
        is_merge=is_merge,
    )
    record.scores["message"] = filters.message_score(msg)
    reason = filters.first_rejection(filters.MESSAGE_RULES, msg, config)
    if reason:
        record.reject(MESSAGE, reason)
    return record


def judge_change(
    record: CommitRecord, raw: LoggedCommit, config: MiningConfig, settings: PytestSettings
) -> None:
    """The size and tests stages, on a record the message stage kept."""
    if settings != DEFAULT_SETTINGS:
        for f in raw.files:
            f.kind = filters.classify_path(f.path, settings)
    change = filters.Change(files=raw.files, is_root=not raw.parents, settings=settings)
    stage, reason = SIZE, filters.first_rejection(filters.SIZE_RULES, change, config)
    if not reason:
        stage, reason = TESTS, filters.first_rejection(filters.TESTS_RULES, change, config)
    if reason:
        record.reject(stage, reason)


def pytest_settings(
    repo_dir: Path, raws: Sequence[LoggedCommit], wanted: set[str] | None = None
) -> dict[str, PytestSettings]:
    """The pytest settings at each of ``raws`` (oldest first) that is ``wanted`` (default:
    all), from one ``git cat-file``.

    Settings are read where they can have changed: at a commit whose numstat names a root
    config file, at the first commit, and at any commit that does not follow the one
    before it (a segment's start, a maintenance branch's commit). Every other commit has
    its parent's, which is the previous one's. A file version met before is not parsed
    again.
    """
    key_of: dict[str, str] = {}
    prev: str | None = None
    key = ""
    for raw in raws:
        changes_config = any(
            p in CONFIG_FILES for f in raw.files for p in (f.path, f.old_path) if p
        )
        if prev is None or not raw.parents or raw.parents[0] != prev or changes_config:
            key = raw.sha
        key_of[raw.sha] = key
        prev = raw.sha
    if wanted is not None:
        key_of = {sha: k for sha, k in key_of.items() if sha in wanted}
    keys = sorted(set(key_of.values()))
    blobs = cat_files(repo_dir, [f"{k}:{name}" for k in keys for name in CONFIG_FILES])
    parsed: dict[tuple[str, ...], PytestSettings] = {}
    read: dict[str, PytestSettings] = {}
    for k in keys:
        found = {name: blobs[f"{k}:{name}"] for name in CONFIG_FILES if f"{k}:{name}" in blobs}
        ids = tuple(f"{name}:{oid}" for name, (oid, _) in found.items())
        if ids not in parsed:
            parsed[ids] = settings_from_blobs({name: data for name, (_, data) in found.items()})
        read[k] = parsed[ids]
    return {sha: read[k] for sha, k in key_of.items()}


# ---------------------------------------------------------------------------- stage 2
#
# Stage 2 works on the survivors in batches, with few git processes per batch: one
# ``git cat-file --batch`` for the old and new version of every changed Python file, one
# ``git diff-tree --stdin -U0`` for the lines each survivor changed, and one per big file
# to catch up with versions that rejected commits made. Each version is parsed with
# ``pyparse.reparse`` from the last version of the same path this run parsed, so the big
# modules that change in commit after commit are not parsed in full every time.
#
# The design first named PyDriller for this stage. Opening a commit with it costs about
# 25 ms in GitPython before any parsing (its diff parser looks up submodules once per
# file), and lizard, behind changed_methods, 70 ms per version of a 100 kB module: on attrs,
# 260 survivors, the first part alone is 14 times the git log pass. PyDriller stays what the
# benchmark measures against, and what the tests check file counts with.

BATCH = 200
CATCH_UP_BYTES = 25_000
_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_SHA_LINE = re.compile(rb"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_C_ESCAPES = {ord(k): ord(v) for k, v in zip("abfnrtv\\\"", "\a\b\f\n\r\t\v\\\"")}


@dataclass
class _Job:
    """One changed Python file of a survivor: the object names of its two versions."""

    path: str
    old_path: str
    before: str | None  # "<parent>:<old path>" when the old side is a Python file
    after: str | None  # "<sha>:<path>"


@dataclass
class _Ref:
    """The last version of a path this run parsed, to re-parse the next one from."""

    oid: str
    commit: str
    pyfile: pyparse.PyFile | None = None


def _jobs(record: CommitRecord) -> list[_Job]:
    jobs = []
    for f in record.files:
        old = f.old_path or f.path
        if f.binary or not (filters.is_python(f.path) or filters.is_python(old)):
            continue
        jobs.append(
            _Job(
                path=f.path,
                old_path=old,
                before=f"{record.parent}:{old}" if filters.is_python(old) else None,
                after=f"{record.sha}:{f.path}" if filters.is_python(f.path) else None,
            )
        )
    return jobs


def _unquote(raw: bytes) -> str:
    """A path as git prints it in a patch header: C-quoted when it holds odd characters."""
    if raw.endswith(b"\t"):  # git adds a tab after names with spaces
        raw = raw[:-1]
    if not raw.startswith(b'"'):
        return raw.decode("utf-8", "replace")
    body, out, i = raw[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if c == 0x5C and i + 1 < len(body):  # backslash
            nxt = body[i + 1]
            if 0x30 <= nxt <= 0x37:
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out.append(_C_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


def _diff_path(raw: bytes, prefix: str) -> str | None:
    path = _unquote(raw)
    if path == "/dev/null":
        return None
    return path.removeprefix(prefix)


@dataclass
class Diff:
    """One ``git diff-tree`` answer: changed line ranges per path, and the symlinks (whose
    "content" is a target path, not Python)."""

    blocks: dict[str, list[pyparse.Block]] = field(default_factory=dict)
    links: set[str] = field(default_factory=set)


def parse_hunks(out: bytes) -> list[Diff]:
    """One ``Diff`` per line given to ``git diff-tree --stdin --always --raw -p -U0``.

    Only raw lines and headers are read: ``-U0`` hunk headers give the exact ranges, and
    the diff's content lines are skipped by their first byte.
    """
    sections: list[Diff] = []
    current = Diff()
    in_header = False
    old: str | None = None
    key: str | None = None
    for line in out.split(b"\n"):
        if not in_header and line[:1] in (b"+", b"-", b" ", b"\\"):
            continue
        if _SHA_LINE.match(line):
            current = Diff()
            sections.append(current)
            in_header = False
            continue
        if line.startswith(b":"):  # ":100644 120000 <oid> <oid> T\tpath" (--raw)
            meta, _, paths = line.partition(b"\t")
            if b" 120000 " in meta or meta.startswith(b":120000 "):
                current.links.update(_unquote(p) for p in paths.split(b"\t"))
            continue
        if line.startswith(b"diff --git "):
            in_header, old, key = True, None, None
            continue
        if in_header:
            if line.startswith(b"--- "):
                old = _diff_path(line[4:], "a/")
            elif line.startswith(b"+++ "):
                key = _diff_path(line[4:], "b/") or old
            if not line.startswith(b"@@ "):
                continue
            in_header = False
        m = _HUNK.match(line)
        if m and key is not None:
            a, b = int(m[1]), int(m[2] if m[2] is not None else 1)
            c, d = int(m[3]), int(m[4] if m[4] is not None else 1)
            i1 = a if b == 0 else a - 1
            j1 = c if d == 0 else c - 1
            current.blocks.setdefault(key, []).append((i1, i1 + b, j1, j1 + d))
    return sections


def read_hunks(
    repo_dir: Path, pairs: list[tuple[str, str]], pathspecs: Sequence[str] = ("*.py", "*.pyi")
) -> dict[tuple[str, str], Diff]:
    """``{(new, old): Diff}`` for the files matching ``pathspecs`` between each pair of
    commits, from one ``git diff-tree --stdin``."""
    if not pairs:
        return {}
    out = git_bytes(
        repo_dir, "diff-tree", "--stdin", "--always", "-r", "--raw", "-p", "-U0", "-M",
        "--no-abbrev", "--no-color", "--no-ext-diff", "--no-textconv",
        "--src-prefix=a/", "--dst-prefix=b/", "--", *pathspecs,
        input="".join(f"{new} {old}\n" for new, old in pairs).encode(),
    )
    sections = parse_hunks(out)
    if len(sections) != len(pairs):
        raise GitError(
            f"git diff-tree answered {len(sections)} of {len(pairs)} diffs", path=repo_dir
        )
    return dict(zip(pairs, sections))


def _lines(blocks: list[pyparse.Block], side: int) -> list[int]:
    """1-based old (side 0) or new (side 2) line numbers inside ``blocks``."""
    return [n + 1 for b in blocks for n in range(b[side], b[side + 1])]


class _Stage2:
    """Parse check and changed symbols for the survivors, oldest first."""

    def __init__(self, repo_dir: Path):
        self.repo_dir = repo_dir
        self.refs: dict[str, _Ref] = {}  # path -> the last version of it parsed

    def run(self, records: list[CommitRecord], tick: Callable[[], None]) -> None:
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            jobs = {r.sha: _jobs(r) for r in batch}
            names = (n for js in jobs.values() for j in js for n in (j.before, j.after) if n)
            blobs = cat_files(self.repo_dir, names)
            own, catch_up = self._plan(batch, jobs, blobs)
            hunks = read_hunks(self.repo_dir, own)
            # Catching up a path spans many commits; diffing only that path keeps it small.
            for path, pairs in catch_up.items():
                for pair, diff in read_hunks(self.repo_dir, pairs, [f":(literal){path}"]).items():
                    hunks.setdefault(pair, Diff()).blocks.update(diff.blocks)
            for record in batch:
                self._judge(record, jobs[record.sha], blobs, hunks)
                tick()

    def _plan(
        self,
        batch: list[CommitRecord],
        jobs: dict[str, list[_Job]],
        blobs: dict[str, tuple[str, bytes]],
    ) -> tuple[list[tuple[str, str]], dict[str, list[tuple[str, str]]]]:
        """The diffs this batch needs: each survivor against its first parent, and, per
        path, the old version against the one last parsed where they differ."""
        own: list[tuple[str, str]] = []
        catch_up: dict[str, dict[tuple[str, str], int]] = {}
        refs = {path: (ref.oid, ref.commit) for path, ref in self.refs.items()}
        for record in batch:
            own.append((record.sha, record.parent or ""))
            for job in jobs[record.sha]:
                before = blobs.get(job.before) if job.before else None
                ref = refs.get(job.old_path)
                if before and ref and ref[0] != before[0]:
                    pair = (record.parent or "", ref[1])
                    catch_up.setdefault(job.old_path, {})[pair] = len(before[1])
                after = blobs.get(job.after) if job.after else None
                if after:
                    refs[job.path] = (after[0], record.sha)
        # A git process costs about as much as parsing 25 kB in full: catch small files up
        # by parsing them in full.
        return own, {
            path: list(pairs) for path, pairs in catch_up.items()
            if sum(pairs.values()) > CATCH_UP_BYTES * (1 + len(pairs) / 5)
        }

    def _judge(
        self,
        record: CommitRecord,
        jobs: list[_Job],
        blobs: dict[str, tuple[str, bytes]],
        hunks: dict[tuple[str, str], Diff],
    ) -> None:
        reason: str | None = None
        symbols: dict[str, list[str]] = {}
        own = hunks.get((record.sha, record.parent or "")) or Diff()
        for job in jobs:
            if job.path in own.links or job.old_path in own.links:
                continue  # a symlink's blob is a path, not Python
            if (job.before and "\n" in job.before) or (job.after and "\n" in job.after):
                reason = reason or f"{job.path!r}: a path with a newline cannot be read back"
                continue
            before_blob = blobs.get(job.before) if job.before else None
            after_blob = blobs.get(job.after) if job.after else None
            before = after = None
            if before_blob is not None:
                before = self._parse_before(record, job, before_blob, hunks)
                if before.error and reason is None:
                    reason = f"{job.old_path} does not parse before the commit: {before.error}"
            blocks = own.blocks.get(job.path, [])
            if after_blob is not None:
                if before is not None and before_blob and before_blob[0] == after_blob[0]:
                    after = before  # renamed or mode change only
                elif before is not None and blocks:
                    after = pyparse.reparse(before, after_blob[1], blocks, job.path)
                else:
                    after = pyparse.parse_file(after_blob[1], job.path)
                self.refs[job.path] = _Ref(after_blob[0], record.sha, after)
                if after.error and reason is None:
                    reason = f"{job.path} does not parse after the commit: {after.error}"
            names = after.symbols_at(_lines(blocks, 2)) if after and not after.error else []
            if before is not None and not before.error:
                names += [n for n in before.symbols_at(_lines(blocks, 0)) if n not in names]
            symbols[job.path] = names
        if reason:
            record.reject(PARSE, reason)
        else:
            record.symbols = symbols

    def _parse_before(
        self,
        record: CommitRecord,
        job: _Job,
        blob: tuple[str, bytes],
        hunks: dict[tuple[str, str], Diff],
    ) -> pyparse.PyFile:
        ref = self.refs.get(job.old_path)
        if ref is not None and ref.pyfile is not None:
            if ref.oid == blob[0]:
                return ref.pyfile
            diff = hunks.get((record.parent or "", ref.commit))
            blocks = diff.blocks.get(job.old_path) if diff else None
            if blocks:
                return pyparse.reparse(ref.pyfile, blob[1], blocks, job.old_path)
        return pyparse.parse_file(blob[1], job.old_path)


def _check_rev(repo_dir: Path, rev: str) -> None:
    if not (repo_dir / ".git").exists() and not (repo_dir / "HEAD").exists():
        raise NotFound(f"{repo_dir} is not a git repository", hint="pass the folder of a clone")
    out = git(repo_dir, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False).strip()
    if not out:
        raise NotFound(
            f"no commit '{rev}' in {repo_dir}",
            hint="the repository may be empty; name a branch, tag or sha that exists",
        )


def mine_repo(
    repo_dir: Path,
    config: MiningConfig,
    *,
    rev: str = "HEAD",
    branches: Sequence[str] = (),
    progress: Progress | None = None,
) -> list[CommitRecord]:
    """Every commit on the first-parent walk of ``rev``, oldest first, each with a verdict;
    then the commits of each of ``branches`` (maintenance branches such as ``2.x-line``)
    that the walks before it did not reach, each walked by first parent too.

    A fix that lands on a maintenance branch reaches the default branch only inside a
    merge, whose first-parent diff is the whole branch: walking the branch itself makes
    the fix its own unit of work. Every commit is judged once.

    ``progress(done, total)`` counts commits. In one process the ones stage 1 rejects are
    done at once and the survivors one by one; across processes a segment's commits are
    done when its process hands them back.
    """
    repo_dir = Path(repo_dir)
    _check_rev(repo_dir, rev)
    for branch in branches:
        _check_rev(repo_dir, branch)
    records = _mine_walk(repo_dir, config, rev, progress)
    seen = {r.sha for r in records}
    for branch in branches:
        chain = git(repo_dir, "rev-list", "--first-parent", branch).split()
        own = [sha for sha in chain if sha not in seen]  # newest first
        if not own:
            continue
        raws = parse_log(git_bytes(repo_dir, *log_args("--no-walk=unsorted", "--stdin"),
                                   input="".join(f"{sha}\n" for sha in own).encode()))
        raws.reverse()
        part = _judge(repo_dir, config, raws, None)
        seen.update(r.sha for r in part)
        records += part
    return records


def _mine_walk(
    repo_dir: Path, config: MiningConfig, rev: str, progress: Progress | None,
) -> list[CommitRecord]:
    cores = _cores()
    if cores > 1:
        # Both stages are split by segments of the first-parent walk, one process each:
        # git log itself runs on one core, and stage 2 is parsing, so a single process
        # leaves the other cores idle. Each segment starts its incremental parsing afresh,
        # which costs one full parse per file at each cut, far less than the core it gains.
        chain = git_bytes(repo_dir, "rev-list", "--first-parent", rev).split()
        segments = _segments([sha.decode() for sha in chain], cores)
        if len(segments) > 1:
            return _mine_in_parallel(repo_dir, config, segments, cores, len(chain), progress)
    return _mine_segment(repo_dir, config, [rev], progress)


def _mine_segment(
    repo_dir: Path, config: MiningConfig, revs: list[str], progress: Progress | None = None,
) -> list[CommitRecord]:
    """Both stages over the commits ``git log revs`` walks, oldest first."""
    raws = parse_log(git_bytes(repo_dir, *log_args(*revs)))
    raws.reverse()  # git prints newest first; a corpus is read in the order it landed
    return _judge(repo_dir, config, raws, progress)


def _judge(
    repo_dir: Path, config: MiningConfig, raws: list[LoggedCommit], progress: Progress | None,
) -> list[CommitRecord]:
    """Both stages over ``raws`` (oldest first)."""
    records = [judge_message(raw, config) for raw in raws]
    settings = pytest_settings(repo_dir, raws, {r.sha for r in records if r.status == "kept"})
    for raw, record in zip(raws, records, strict=True):
        if record.status == "kept":
            judge_change(record, raw, config, settings[raw.sha])
    survivors = [r for r in records if r.status == "kept"]
    total = len(records)
    done = total - len(survivors)
    if progress:
        progress(done, total)

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    _Stage2(repo_dir).run(survivors, tick)
    return records


SEGMENT_MIN_COMMITS = 300  # below this a second process costs more than it saves
SEGMENT_MAX_COMMITS = 1500  # above it more segments than cores: even load, finer progress


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _segments(chain: list[str], cores: int) -> list[list[str]]:
    """``git log`` revision arguments for contiguous runs of ``chain`` (newest first), each
    run's own tip and the tip of the run before it excluded; oldest run first."""
    n = len(chain)
    count = min(max(cores, -(-n // SEGMENT_MAX_COMMITS)), n // SEGMENT_MIN_COMMITS)
    if count <= 1:
        return [[chain[0]]] if chain else []
    cuts = [n * k // count for k in range(count + 1)]  # even sizes, off by one at most
    out = [[chain[a], f"^{chain[b]}"] if b < n else [chain[a]] for a, b in itertools.pairwise(cuts)]
    out.reverse()
    return out


def _mine_in_parallel(
    repo_dir: Path, config: MiningConfig, segments: list[list[str]], workers: int, total: int,
    progress: Progress | None,
) -> list[CommitRecord]:
    parts: list[list[CommitRecord] | None] = [None] * len(segments)
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(segments)), mp_context=ctx) as pool:
        futures = {pool.submit(_mine_segment, repo_dir, config, revs): i for i, revs in enumerate(segments)}
        done = 0
        if progress:
            progress(0, total)
        for future in concurrent.futures.as_completed(futures):
            part = parts[futures[future]] = future.result()
            done += len(part)
            if progress:
                progress(done, total)
    return [record for part in parts for record in part or []]
