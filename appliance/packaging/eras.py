"""How each dependency era is locked, filled and proven, and what happens when it cannot be.

An era is locked **as of its own time**: with the packages as they were uploaded shortly
after its last commit landed (``uv pip compile --exclude-newer``), so a 2021 commit is
tested with the pytest and hypothesis of 2021, not with today's, which refuse what it
does (``pytest.warns(None)`` under pytest 9). The date and the tool are written into the
lock's header, the era record and the manifest. Where the period packages cannot serve
this Python, an era falls back one step at a time, each step recorded in its notes:

1. as of its date, but for the build back-end, which only installs the checkout and must
   be today's (a period setuptools cannot make an editable install for today's uv); where
   a pinned sdist does not build here (no wheel for this Python), the same with that
   package today's (``_EraJob._unbuilt_today``);
2. as of its date, but the test runner (pytest) the newest too: a period pytest may
   install and still not run on a newer Python (pytest < 6.2 on 3.10+), which the smoke
   test after every install finds out;
3. the newest packages, and for a setuptools project the newest with a setuptools that
   still has ``pkg_resources`` (removed in 82), which old pinned test tools import;
4. the same on each other Python the box has (``[packaging] pythons``) that the era's
   ``requires-python`` admits: an old era whose sdists build only on an older Python.

An era none of these serve is recorded as **unresolvable**, with the package named in the
reason; its commits keep the era and so the reason, and every other era and commit is
packaged: one bad era never sinks a repo. The project's own distribution is never in a
lock (a test tool may depend on it: the checkout is what must be tested).

Eras are locked concurrently (``[packaging] lock_workers``; locking is one process per
era, mostly waiting on the index) and share one download cache (``var/cache/packaging``).
Filling the wheelhouse is serialised, since eras share it and a wheel built from an sdist
for one era is recorded in the others' locks; an sdist that failed to build for one era is
not built again for another (or for a fallback step); verifying runs concurrently again.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name, canonicalize_version, parse_wheel_filename

from appliance.config import Home, PackagingConfig
from appliance.errors import CraError, UnbuildableSdist
from appliance.hashing import sha256_file
from appliance.packaging.wheelhouse import BuildKey, resolve_names
from appliance.records import EraRecord
from harness.envs import find_uv
from harness.git import git

TEST_RUNNER = ("pytest",)  # taken as of today in step 2
MAX_ERROR_CHARS = 900

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Attempt:
    """One way of locking an era, tried in order until one installs and runs."""

    label: str  # "as of 2021-06-02", "newest on Python 3.9", ...
    python: str
    interpreter: str | None
    as_of: str | None
    newest: tuple[str, ...] = ()
    pkg_resources: bool = False  # keep a setuptools that still has it (see with_core)
    unbuilt: tuple[str, ...] = ()  # taken as of today: their period sdists did not build


@dataclass
class ErasReport:
    """Wall-clock seconds during which at least one era was in each step."""

    timings: dict[str, float] = field(default_factory=dict)


class _Clock:
    """Intervals per step, from several threads; ``union`` is what a user waits for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: dict[str, list[tuple[float, float]]] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self.spans.setdefault(name, []).append((start, time.monotonic()))

    def union(self) -> dict[str, float]:
        out = {}
        for name, spans in self.spans.items():
            total, end = 0.0, float("-inf")
            for a, b in sorted(spans):
                if b > end:
                    total += b - max(a, end)
                    end = b
            out[name] = round(total, 3)
        return out


def landed_at(repo_dir: Path, shas: list[str]) -> dict[str, int]:
    """When each commit landed (committer time, seconds since the epoch), one git process.

    The committer date, not the author date: a pull request written in January and merged
    in March was tested against March's packages.
    """
    if not shas:
        return {}
    out = git(repo_dir, "log", "--no-walk=unsorted", "--format=%H %ct", "--stdin",
              input="".join(f"{s}\n" for s in shas).encode())
    found = {}
    for line in out.splitlines():
        sha, _, ts = line.partition(" ")
        if ts.strip().isdigit():
            found[sha] = int(ts)
    return found


def era_as_of(era: EraRecord, landed: dict[str, int], grace_days: int) -> str | None:
    """ISO 8601 UTC: ``grace_days`` after the era's last commit landed (None: unknown)."""
    times = [landed[s] for s in era.commits if s in landed]
    if not times:
        return None
    moment = datetime.fromtimestamp(max(times), UTC) + timedelta(days=grace_days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def interpreter_for(python: str) -> str | None:
    """An interpreter of ``python`` on this machine (the running one when it matches)."""
    if python == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return sys.executable
    return shutil.which(f"python{python}")


def pythons_for(era: EraRecord, box: str, others: list[str]) -> tuple[list[str], list[str]]:
    """The Pythons to try for ``era``, best first, and notes on the choice.

    The box's Python first when the era's ``requires-python`` admits it, then the box's
    other Pythons it admits, newest first. When it admits none, the box's Python anyway:
    the declaration may be stale, and the lock and the tests will tell.
    """
    notes: list[str] = []
    candidates = list(dict.fromkeys([box, *sorted(others, key=_version_key, reverse=True)]))
    if not era.requires_python:
        return candidates, notes
    try:
        spec = SpecifierSet(era.requires_python)
    except InvalidSpecifier:
        notes.append(f"requires-python {era.requires_python!r} is not a specifier; ignored")
        return candidates, notes
    fits = [p for p in candidates if spec.contains(f"{p}.0", prereleases=True)]
    if not fits:
        notes.append(f"requires-python {era.requires_python} admits none of Python "
                     f"{', '.join(candidates)}; locked for {box} anyway")
        return candidates, notes
    if fits[0] != box:
        notes.append(f"requires-python {era.requires_python} excludes Python {box}")
    return fits, notes


def _version_key(python: str) -> tuple[int, ...]:
    return tuple(int(p) for p in python.split(".") if p.isdigit())


def attempts_for(
    era: EraRecord, as_of: str | None, pythons: list[str], *, uv: bool, tools: list[str] | None = None,
) -> list[Attempt]:
    """The steps of the module docstring, for ``era``.

    The build back-end and what it brings along (``tools``; default: the build
    requirements' own names) are always today's: they only install the checkout
    (editable), which a period setuptools (no PEP 660 before 64) cannot do with today's
    installers, and a setuptools of today imports the ``packaging`` it finds installed.
    """
    tools_ = tuple(dict.fromkeys(tools if tools is not None else _names(era.build_requires)))
    out: list[Attempt] = []
    for i, py in enumerate(pythons):
        interpreter = interpreter_for(py)
        suffix = "" if i == 0 else f" on Python {py}"
        if as_of:
            out.append(Attempt(f"as of {as_of[:10]}{suffix}", py, interpreter, as_of, tools_))
            if uv:
                out.append(Attempt(f"as of {as_of[:10]} with the newest {', '.join(TEST_RUNNER)}{suffix}",
                                   py, interpreter, as_of, tuple(dict.fromkeys((*tools_, *TEST_RUNNER)))))
        out.append(Attempt(f"newest{suffix}", py, interpreter, None))
        if "setuptools" in _names(era.build_requires):
            out.append(Attempt(f"newest with a setuptools that has pkg_resources{suffix}", py,
                               interpreter, None, pkg_resources=True))
    return out


# setuptools 82 removed pkg_resources, which period code still imports (pytest plugins,
# zope's namespace packages): an era taken as of a date keeps a setuptools that has it
# (81 makes editable installs for today's installers and has the core extra).
SETUPTOOLS_WITH_PKG_RESOURCES = "setuptools<82"


def with_core(requirements: list[str], *, as_of: bool = False) -> list[str]:
    """``setuptools`` as ``setuptools[core]``: a setuptools of today (71 and later) imports
    the packaging, more-itertools, ... it finds installed before its own vendored copies,
    and its ``core`` extra says which versions it needs. Locked with it, an era's
    environment has them; locked without, a period ``packaging`` breaks its builds.
    ``as_of``: also ``SETUPTOOLS_WITH_PKG_RESOURCES``."""
    out = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            out.append(text)
            continue
        if canonicalize_name(req.name) == "setuptools" and not req.extras and not req.url:
            req.extras = {"core"}
            if as_of:
                out.append(SETUPTOOLS_WITH_PKG_RESOURCES)
        out.append(str(req))
    return out


def _names(requirements: list[str]) -> list[str]:
    out = []
    for text in requirements:
        try:
            out.append(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    return out


def package_eras(
    home: Home, name: str, repo_dir: Path, eras: list[EraRecord], pk: PackagingConfig, box: str,
    *, progress: Progress | None = None,
) -> ErasReport:
    """Lock, fill and verify every era (see the module docstring); sets each era's fields."""
    tick = progress or (lambda step, done, total: None)
    clock = _Clock()
    wheelhouse = home.wheelhouse(name)
    home.locks_dir(name).mkdir(parents=True, exist_ok=True)
    log_dir = home.logs / "corpus" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    cache = home.var / "cache" / "packaging"
    landed = landed_at(repo_dir, [s for e in eras for s in e.commits]) if pk.lock_as_of else {}
    uv = pk.lock_tool != "pip-compile" and find_uv() is not None
    fill_lock = threading.Lock()
    unbuildable: dict[BuildKey, UnbuildableSdist] = {}  # filled under fill_lock
    own_fallback = canonicalize_name(name)
    links = [Path(p) for p in pk.find_links]

    def one(era: EraRecord) -> None:
        pythons, notes = pythons_for(era, box, [p for p in pk.pythons if p != box])
        as_of = era_as_of(era, landed, pk.lock_grace_days) if pk.lock_as_of else None
        log = log_dir / f"lock-{era.key[:12]}.log"
        job = _EraJob(era, wheelhouse, home.locks_dir(name) / f"{era.key[:12]}.txt", log, pk,
                      cache, clock, fill_lock, era.project or own_fallback, unbuildable, per_package=uv)
        job.notes += notes
        tools = None
        if as_of and uv:
            with clock.step("lock"):
                tools = resolve_names(with_core(era.build_requires, as_of=True), box, find_links=links,
                                      no_index=pk.no_index, log=log, cache_dir=cache)
        job.core = tools is not None
        job.run(attempts_for(era, as_of, pythons, uv=uv, tools=tools))

    done = 0
    tick("lock", 0, len(eras))
    workers = max(1, min(pk.lock_workers, len(eras)))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="era") as pool:
        for future in concurrent.futures.as_completed([pool.submit(one, e) for e in eras]):
            future.result()
            done += 1
            tick("lock", done, len(eras))
    with clock.step("prune"):
        prune_wheelhouse(wheelhouse, [wheelhouse / e.lock_path for e in eras if e.lock_path])
    return ErasReport(timings=clock.union())


@dataclass
class _EraJob:
    era: EraRecord
    wheelhouse: Path
    lock: Path
    log: Path
    pk: PackagingConfig
    cache: Path
    clock: _Clock
    fill_lock: threading.Lock
    own: str
    unbuildable: dict[BuildKey, UnbuildableSdist]  # sdists that failed to build, any era
    per_package: bool = False  # the lock tool takes single packages as of today (uv)
    notes: list[str] = field(default_factory=list)

    core: bool = False  # lock setuptools with its core extra when taken as of a date

    def for_lock(self, attempt: Attempt) -> EraRecord:
        """The era as ``attempt`` locks it: as of a date, ``setuptools`` with its ``core``
        extra (``with_core``), where that resolved at all (not from a bare wheel folder)."""
        if self.core and attempt.as_of:
            return replace(self.era, build_requires=with_core(self.era.build_requires, as_of=True))
        if attempt.pkg_resources:
            return replace(self.era, build_requires=[*self.era.build_requires, SETUPTOOLS_WITH_PKG_RESOURCES])
        return self.era

    def run(self, attempts: list[Attempt]) -> None:
        from appliance.packaging.wheelhouse import LockRequest, lock_era

        failures: list[tuple[str, str]] = []  # (attempt label, reason)
        failed_bodies: dict[str, str] = {}  # lock body -> reason: the same lock fails the same way
        links = [Path(p) for p in self.pk.find_links]
        queue = list(attempts)
        while queue:
            attempt = queue.pop(0)
            request = LockRequest(
                python=attempt.python, as_of=attempt.as_of, newest=attempt.newest,
                exclude=(self.own,), interpreter=attempt.interpreter, tool=self.pk.lock_tool,
            )
            try:
                with self.clock.step("lock"):
                    info = lock_era(self.for_lock(attempt), request, self.lock, find_links=links,
                                    no_index=self.pk.no_index, log=self.log, cache_dir=self.cache)
                body = _body(self.lock)
                if body in failed_bodies:
                    failures.append((attempt.label, f"the same lock as before: {failed_bodies[body]}"))
                    continue
                try:
                    self._fill_and_verify(attempt, info.left_out)
                except CraError as exc:
                    failed_bodies[body] = str(exc)
                    raise
            except CraError as exc:
                failures.append((attempt.label, str(exc)))
                queue[:0] = self._unbuilt_today(attempt, exc)
                continue
            self.era.status, self.era.error = "locked", None
            self.era.lock_path = str(self.lock.relative_to(self.wheelhouse))
            self.era.lock_sha256 = sha256_file(self.lock)
            self.era.python, self.era.locked_as_of, self.era.lock_tool = attempt.python, info.as_of, info.tool
            self.era.notes = [*self.notes, *(f"{label}: {why}" for label, why in failures), *info.notes]
            if attempt.newest and info.as_of:
                self.era.notes.append(f"{_some(attempt.newest, attempt.unbuilt)} taken as of today")
            return
        self.lock.unlink(missing_ok=True)
        self.era.status, self.era.lock_path, self.era.lock_sha256 = "unresolvable", None, None
        self.era.notes = [*self.notes, *(f"{label}: {why}" for label, why in failures)]
        self.era.error = _summary(failures)

    def _unbuilt_today(self, attempt: Attempt, exc: CraError) -> list[Attempt]:
        """After an attempt as of a date failed on sdists that do not build here: the same
        date with those packages today's, the era's other packages still of their time.

        PyYAML 5.4.1 and 6.0 had no wheel for Python 3.11 before October 2022 and their
        sdists no longer build (Cython 3); on attrs, 8 eras of 2021-2022 fell back to the newest packages for that
        alone, and the newest jsonschema (via pytest-mypy-plugins) imports ``referencing``,
        which needs an attrs newer than those commits: the 5 of their commits validated were env_errors.
        """
        if not (self.per_package and attempt.as_of and isinstance(exc, UnbuildableSdist)):
            return []
        unbuilt = tuple(dict.fromkeys((*attempt.unbuilt, *exc.names)))
        if unbuilt == attempt.unbuilt:
            return []
        label = f"{attempt.label}, with the newest {', '.join(unbuilt)}"
        newest = tuple(dict.fromkeys((*attempt.newest, *unbuilt)))
        return [replace(attempt, label=label, newest=newest, unbuilt=unbuilt)]

    def _fill_and_verify(self, attempt: Attempt, stand_ins: list[str]) -> None:
        from appliance.packaging.wheelhouse import fill_wheelhouse, verify_wheelhouse

        links = [Path(p) for p in self.pk.find_links]
        with self.fill_lock, self.clock.step("fill"):
            fill_wheelhouse(self.lock, self.wheelhouse, attempt.python, find_links=links,
                            no_index=self.pk.no_index, log=self.log, cache_dir=self.cache,
                            unbuildable=self.unbuildable)
        with self.clock.step("verify"):
            verify_wheelhouse(self.lock, self.wheelhouse, python=attempt.python, log=self.log,
                              use_uv=None if self.pk.use_uv else False, smoke=True,
                              interpreter=attempt.interpreter, stand_ins=stand_ins,
                              find_links=links, no_index=self.pk.no_index)


def _some(names: tuple[str, ...], named: tuple[str, ...] = (), shown: int = 4) -> str:
    """``a, b, c, d and 12 more``, ``named`` and the test runner always named."""
    always = [*named, *(n for n in TEST_RUNNER if n not in named)]
    first = [n for n in always if n in names] + [n for n in names if n not in always]
    shown = max(shown, len([n for n in always if n in names]))
    if len(first) <= shown:
        return ", ".join(first)
    return f"{', '.join(first[:shown])} and {len(first) - shown} more"


def _body(lock: Path) -> str:
    return "".join(ln for ln in lock.read_text().splitlines(keepends=True) if not ln.startswith("#"))


def _summary(failures: list[tuple[str, str]]) -> str:
    """The first failure, and each later one that says something else."""
    if not failures:
        return "no way to lock it was tried"
    parts: list[str] = []
    seen: set[str] = set()
    for label, why in failures:
        if why.startswith("the same lock as before") or why in seen:
            continue
        seen.add(why)
        parts.append(f"{label}: {why}")
    text = "; ".join(parts)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def prune_wheelhouse(wheelhouse: Path, locks: list[Path]) -> list[str]:
    """Delete the wheels no lock pins (left by eras that fell back); returns their names."""
    from appliance.packaging.wheelhouse import read_lock

    pinned = {(e.name, canonicalize_version(e.version)) for lock in locks for e in read_lock(lock)}
    removed = []
    for path in sorted(Path(wheelhouse).glob("*.whl")):
        try:
            dist, version, _, _ = parse_wheel_filename(path.name)
        except ValueError:
            continue
        if (str(dist), canonicalize_version(version)) not in pinned:
            path.unlink()
            removed.append(path.name)
    return removed
