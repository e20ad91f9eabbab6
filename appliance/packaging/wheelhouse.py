"""Locks and wheelhouses: the connected side's half of an offline environment.

This is the only module of cra allowed to reach a package index. For one dependency era
it writes a hash-pinned lock (``lock_era``), downloads a wheel for every pinned
distribution (``fill_wheelhouse``), and proves the result installs with the network
cut off (``verify_wheelhouse``). Every pip, pip-compile and uv process runs with
``clean_pip_env()``: a pip.conf ``find-links`` or ``PIP_*`` variable would otherwise let
a ``--no-index`` install find wheels outside the wheelhouse and "prove" it complete.

Wheels built from sdists and the lock's hashes
----------------------------------------------
A lock from ``pip-compile --generate-hashes`` lists the sha256 of the files on the
index. Where a distribution has only an sdist, cra builds the wheel itself (the
air-gapped side must not build anything: it would need that package's build back-end
too), and that wheel's hash is in no index. cra does not drop hash checking for such
packages. Instead ``fill_wheelhouse`` appends the built wheel's sha256 to that
requirement's ``--hash`` list in the lock, with a comment naming the wheel and the
sdist it came from, whose index hash stays in the list. So the lock is the *install*
lock: every file installed offline is hash-checked, downloaded ones against the index's
hashes, built ones against the hash recorded when cra built them. It follows that a
lock's sha256 (for the manifest) must be taken after ``fill_wheelhouse``, and that a
wheel rebuilt later (builds are not bit-reproducible) would fail the check: files
already in the wheelhouse are never rebuilt.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, sys_tags
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from appliance.atomic import write_atomic
from appliance.errors import (
    BrokenTools,
    ConfigError,
    Failed,
    LockError,
    MissingWheel,
    UnbuildableSdist,
)
from appliance.hashing import sha256_file
from appliance.pipenv import clean_pip_env
from appliance.records import EraRecord
from harness.envs import find_uv

LOCK_TIMEOUT_S = 1800
DOWNLOAD_TIMEOUT_S = 3600
INSTALL_TIMEOUT_S = 1800
# No index URL or find-links written into the lock: the air-gapped side has neither.
PIP_COMPILE = (
    "-m piptools compile --quiet --generate-hashes --no-emit-index-url --no-emit-find-links"
    " --allow-unsafe --strip-extras --no-header --resolver=backtracking --output-file lock.txt"
)
SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


# ---------------------------------------------------------------------------------------
# Running tools


def _env(cache_dir: Path | None) -> dict[str, str]:
    """``clean_pip_env()`` plus a pinned cache and no virtualenv configuration."""
    extra: dict[str, str] = {}
    if cache_dir is not None:
        extra["PIP_CACHE_DIR"] = str(Path(cache_dir) / "pip")
        extra["UV_CACHE_DIR"] = str(Path(cache_dir) / "uv")
    env = clean_pip_env(extra)
    for key in [k for k in env if k.startswith("VIRTUALENV_")]:
        del env[key]
    env["VIRTUALENV_CONFIG_FILE"] = os.devnull
    return env


def _run(
    cmd: list[str],
    *,
    env: dict[str, str],
    log: Path | None,
    timeout: float,
    cwd: Path | None = None,
) -> tuple[int, str]:
    """Run a tool, stdout and stderr together; append both to ``log`` when given."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        code, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or ""
        code, out = 124, (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
        out += f"\n(cra: timed out after {timeout:.0f}s)\n"
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            took = time.monotonic() - started
            fh.write(f"$ {' '.join(cmd)}\n{out}\n[exit {code}, {took:.1f}s]\n\n")
    return code, out


def _python_tuple(python: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)", python.strip())
    if not match:
        raise ConfigError(
            f"python version {python!r} is not of the form X.Y", hint="pass e.g. --python 3.11"
        )
    return int(match[1]), int(match[2])


def _is_running_python(python: str) -> bool:
    return _python_tuple(python) == sys.version_info[:2]


def _see_log(log: Path | None) -> str:
    return f"see {log}" if log else "re-run with a log file to see the full output"


# ---------------------------------------------------------------------------------------
# Locking

LOCK_TOOLS = ("auto", "uv", "pip-compile")


@dataclass(frozen=True)
class LockRequest:
    """How one era is to be locked (``appliance.packaging.eras`` decides it).

    ``as_of``: resolve with the packages as they were uploaded by then (ISO 8601 UTC), so a
    2021 commit gets the pytest of 2021, not today's; None: the newest. ``newest``: packages
    taken as of today even so (the build back-end, which only installs the checkout; the
    test runner, when its period version does not run on this Python). ``exclude``: distributions that must not be in the lock, the project
    itself above all: a test tool that depends on it (pytest on attrs, say) would
    otherwise put a released copy in the era environment, and the tests would import
    that instead of the checkout.
    """

    python: str
    as_of: str | None = None
    newest: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    interpreter: str | None = None  # the Python that builds sdists' metadata; None: this one
    tool: str = "auto"


@dataclass
class LockInfo:
    """What locking did: the tool, the cut-off it honoured, and what it could not honour."""

    tool: str
    as_of: str | None
    notes: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # pins of the project itself, dropped


def lock_era(
    era: EraRecord,
    python: str | LockRequest,
    out_lock: Path,
    *,
    find_links: list[Path] | None = None,
    no_index: bool = False,
    log: Path | None = None,
    cache_dir: Path | None = None,
) -> LockInfo:
    """Resolve ``era``'s requirements and build back-end into a hash-pinned lock.

    ``python`` is the target X.Y, or a ``LockRequest`` saying more. uv (``uv pip compile
    --generate-hashes``, the same lock format) is used when it is installed: it resolves
    for any target Python, honours ``--exclude-newer`` per package, and is several times
    faster than pip-compile, which stays the fallback (the running Python only; an
    as-of date through pip's ``--uploaded-prior-to`` where pip has it). The build back-end
    is locked with the rest so its wheels land in the wheelhouse and editable installs
    work offline. Written atomically: a failed lock leaves no file behind. Raises
    ``LockError`` naming the conflict.
    """
    req = python if isinstance(python, LockRequest) else LockRequest(python=python)
    _python_tuple(req.python)
    if req.tool not in LOCK_TOOLS:
        raise ConfigError(f"lock tool {req.tool!r} is unknown", hint=f"use one of {', '.join(LOCK_TOOLS)}")
    out_lock = Path(out_lock)
    out_lock.parent.mkdir(parents=True, exist_ok=True)
    links = [Path(p) for p in (find_links or [])]
    uv = find_uv() if req.tool in ("auto", "uv") else None
    if req.tool == "uv" and uv is None:
        raise LockError("the uv lock tool was asked for but uv is not installed",
                        hint="pip install 'cra[fast]', or set [packaging] lock_tool = \"auto\"")
    info = LockInfo(tool="uv pip compile" if uv else "pip-compile", as_of=req.as_of)
    with tempfile.TemporaryDirectory(prefix="cra-lock-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text(
            "".join(f"{r}\n" for r in [*era.requirements, *era.build_requires])
        )
        if uv is not None:
            cmd = _uv_compile(uv, req)
        elif _is_running_python(req.python):
            cmd = [sys.executable, *PIP_COMPILE.split()]
            if cache_dir is not None:
                cmd += ["--cache-dir", str(Path(cache_dir) / "pip-tools")]
            if req.as_of and req.newest:
                info.as_of = None
                info.notes.append(
                    f"locked with the newest packages: pip-compile cannot take {', '.join(req.newest)} "
                    f"as of today and the rest as of {req.as_of[:10]} (uv can)"
                )
            elif req.as_of and _pip_knows_uploaded_prior_to():
                cmd += ["--pip-args", f"--uploaded-prior-to={req.as_of}"]
            elif req.as_of:
                info.as_of = None
                info.notes.append(f"locked with the newest packages: this pip cannot resolve as of {req.as_of[:10]}")
        else:
            raise LockError(
                f"cannot lock era {era.key[:12]} for Python {req.python}: pip-compile only "
                f"resolves for the running Python {sys.version_info[0]}.{sys.version_info[1]}",
                hint="install uv (pip install 'cra[fast]') or run cra under that Python",
            )
        for link in links:
            cmd += ["--find-links", str(link.resolve())]
        if no_index:
            cmd.append("--no-index")
        cmd.append("requirements.in")  # relative, so "# via -r requirements.in" is stable
        code, out = _run(cmd, env=_env(cache_dir), log=log, timeout=LOCK_TIMEOUT_S, cwd=work)
        produced = work / "lock.txt"
        if code != 0 or not produced.exists():
            inputs = (work / "requirements.in").read_text().splitlines()
            reason = re.sub(  # pip says "-r requirements.in (line 3)": name the requirement
                r"-r requirements\.in \(line (\d+)\)",
                lambda m: inputs[int(m[1]) - 1] if int(m[1]) <= len(inputs) else m[0],
                _lock_failure(out),
            )
            when = f" as of {info.as_of[:10]}" if info.as_of else ""
            raise LockError(
                f"{info.tool} could not resolve era {era.key[:12]} for Python {req.python}{when}: {reason}",
                hint=_see_log(log),
            )
        body, left_out = drop_from_lock(produced.read_text(), req.exclude)
        info.left_out = left_out
        header = [
            f"# cra lock for dependency era {era.key}, Python {req.python}",
            f"# written by {info.tool} --generate-hashes; install it with --require-hashes --no-deps",
            f"# packages as uploaded by {info.as_of}" if info.as_of else "# the newest packages",
        ]
        if info.as_of and req.newest and uv is not None:
            header.append(f"# except {', '.join(req.newest)}: the newest")
        if left_out:
            header.append(
                f"# left out: {', '.join(left_out)} (the project itself: the checkout is installed editable)"
            )
        write_atomic(out_lock, "".join(f"{h}\n" for h in header) + body)
    return info


def _uv_compile(uv: str, req: LockRequest, *, hashes: bool = True) -> list[str]:
    # --python: the interpreter that builds sdists' metadata; never let uv go looking for
    # (or downloading) one of the target version
    cmd = [uv, "pip", "compile", "--quiet", *(["--generate-hashes"] if hashes else []), "--no-header"]
    cmd += ["--no-python-downloads", "--python", req.interpreter or sys.executable]
    cmd += ["--python-version", req.python, "--output-file", "lock.txt"]
    if req.as_of:
        cmd += ["--exclude-newer", req.as_of]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
        for name in req.newest:
            cmd += ["--exclude-newer-package", f"{name}={now}"]
    return cmd


def resolve_names(
    requirements: list[str],
    python: str,
    *,
    interpreter: str | None = None,
    find_links: list[Path] | None = None,
    no_index: bool = False,
    log: Path | None = None,
    cache_dir: Path | None = None,
) -> list[str] | None:
    """The canonical names of everything ``requirements`` resolve to today (with uv), or
    None when uv is missing or cannot resolve them: what a build back-end brings along."""
    uv = find_uv()
    if uv is None or not requirements:
        return None
    with tempfile.TemporaryDirectory(prefix="cra-names-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text("".join(f"{r}\n" for r in requirements))
        cmd = _uv_compile(uv, LockRequest(python=python, interpreter=interpreter), hashes=False)
        cmd += [arg for link in find_links or [] for arg in ("--find-links", str(Path(link).resolve()))]
        cmd += [*(["--no-index"] if no_index else []), "requirements.in"]
        code, _ = _run(cmd, env=_env(cache_dir), log=log, timeout=LOCK_TIMEOUT_S, cwd=work)
        if code != 0 or not (work / "lock.txt").exists():
            return None
        names = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==", (work / "lock.txt").read_text(), re.MULTILINE)
    return sorted({canonicalize_name(n) for n in names})


_PIP_UPLOADED_PRIOR_TO: bool | None = None


def _pip_knows_uploaded_prior_to() -> bool:
    """Whether the pip pip-compile drives has ``--uploaded-prior-to`` (pip 25.3 and later)."""
    global _PIP_UPLOADED_PRIOR_TO
    if _PIP_UPLOADED_PRIOR_TO is None:
        try:
            from pip._internal.cli import cmdoptions

            _PIP_UPLOADED_PRIOR_TO = hasattr(cmdoptions, "uploaded_prior_to")
        except ImportError:
            _PIP_UPLOADED_PRIOR_TO = False
    return _PIP_UPLOADED_PRIOR_TO


def drop_from_lock(text: str, names: Iterable[str]) -> tuple[str, list[str]]:
    """The lock text without the pins of ``names`` (their hash lines and "# via" notes
    too), and the pins it removed."""
    wanted = {canonicalize_name(n) for n in names}
    if not wanted:
        return text, []
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    removed: list[str] = []
    skipping = False
    for line in lines:
        if line[:1].isspace() and line.strip():
            if not skipping:
                out.append(line)  # a --hash continuation or a "# via" note of a kept pin
            continue
        skipping = False
        head = line.split(";", 1)[0].split("\\", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*===?\s*(\S+)", head)
        if match and canonicalize_name(match[1]) in wanted:
            removed.append(f"{canonicalize_name(match[1])}=={match[3]}")
            skipping = True
            continue
        out.append(line)
    return "".join(out), removed


_NOISE = re.compile(
    r"^(hint:|note:|to fix this|\d+\. |error: resolutionimpossible|traceback|file \"|"
    r"\[notice\]|warning:|using pip|if you believe|the above exception|cra: timed out|\^+$)",
    re.IGNORECASE,
)
_EXC_PREFIX = re.compile(r"^([a-z_]+\.)*[A-Za-z]+(Error|Exception|NotFound|Impossible): ")


def _lock_failure(output: str) -> str:
    """The one line of a resolver's (or pip's) output that says what is wrong.

    Preference: pip's conflict report, then its "Cannot install" / "No matching
    distribution" lines, then uv's "Because ..." explanation, then the last line that is
    not a traceback or a hint.
    """
    lines = [_EXC_PREFIX.sub("", ln.strip()) for ln in output.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("The conflict is caused by:"):
            detail = []
            for nxt in lines[i + 1 :]:
                if _NOISE.match(nxt) or nxt.startswith(("To fix", "Additionally", "ERROR")):
                    break
                detail.append(nxt)
            return "conflict: " + "; ".join(detail)
    for line in lines:  # uv: "error: Failed to build `nodeenv==1.3.2`" names the sdist
        if re.match(r"^(error: )?Failed to (download and )?build `", line):
            raw = [ln.strip() for ln in output.splitlines()]
            cause = _build_cause(output) or next(
                (ln for ln in reversed(raw) if re.match(r"^[\w.]+(Error|Exception): ", ln)), ""
            )
            return line.removeprefix("error: ") + (f": {cause}" if cause else "")
    for pattern in ("Cannot install", "No matching distribution found", "Could not find a version"):
        for line in lines:
            if pattern in line:
                return line.removeprefix("ERROR: ")
    raw = output.splitlines()
    for i, line in enumerate(raw):  # uv: "  cause: Because ..." (or "╰─▶ Because ..." on a tty)
        stripped = line.strip()
        if stripped.startswith(("cause:", "╰─▶")):
            text = [re.sub(r"^(cause:|╰─▶)\s*", "", stripped)]
            for nxt in raw[i + 1 :]:
                if (
                    not nxt.strip()
                    or not nxt[:1].isspace()
                    or nxt.strip().startswith(("hint:", "cause:"))
                ):
                    break
                text.append(nxt.strip())
            return " ".join(text)
    for line in reversed(lines):
        if not _NOISE.match(line):
            return line.removeprefix("ERROR: ").removeprefix("error: ")
    return lines[-1] if lines else "no output, only an exit status"


# ---------------------------------------------------------------------------------------
# Reading locks


@dataclass
class LockEntry:
    """One pinned distribution of a lock, and where it sits in the file."""

    name: str  # canonical
    version: str
    requirement: Requirement
    hashes: list[str]  # "sha256:..."
    first_line: int
    last_line: int

    def applies_to(self, python: str) -> bool:
        """Whether this pin is installed on ``python`` (its marker, if any, says yes)."""
        if self.requirement.marker is None:
            return True
        env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
        env["python_version"] = python
        if not _is_running_python(python):
            env["python_full_version"] = f"{python}.0"
        return bool(self.requirement.marker.evaluate(env))


def read_lock(lock: Path) -> list[LockEntry]:
    """Parse pip-compile / uv output: ``name==version [; marker] \\`` then ``--hash`` lines."""
    lines = Path(lock).read_text().splitlines()
    entries: list[LockEntry] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if (
            not line.strip()
            or line.lstrip().startswith("#")
            or line[:1].isspace()
            or line.startswith("-")
        ):
            i += 1
            continue
        start = i
        block = [line.rstrip("\\").strip()]
        while lines[i].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            block.append(lines[i].strip().rstrip("\\").strip())
        text = " ".join(block)
        spec, _, _ = text.partition(" --hash")
        hashes = re.findall(r"--hash[= ](\S+)", text)
        try:
            req = Requirement(spec.strip())
        except InvalidRequirement as exc:
            raise Failed(f"{lock}: line {start + 1} is not a requirement: {spec!r}") from exc
        pins = [s for s in req.specifier if s.operator in ("==", "===")]
        if not pins:
            raise Failed(
                f"{lock}: {req.name} is not pinned to one version (line {start + 1})",
                hint="lock files come from lock_era; regenerate it",
            )
        entries.append(
            LockEntry(canonicalize_name(req.name), pins[0].version, req, hashes, start, i)
        )
        i += 1
    return entries


# ---------------------------------------------------------------------------------------
# Wheel files


def _target_tags(python: str) -> set[Tag]:
    major, minor = _python_tuple(python)
    if (major, minor) == sys.version_info[:2]:
        return set(sys_tags())
    return set(cpython_tags((major, minor))) | set(compatible_tags((major, minor)))


def _wheels(wheelhouse: Path, python: str) -> dict[tuple[str, str], list[Path]]:
    """Wheels that fit ``python``, by (canonical name, canonical version)."""
    tags = _target_tags(python)
    found: dict[tuple[str, str], list[Path]] = {}
    if not wheelhouse.is_dir():
        return found
    for path in sorted(wheelhouse.glob("*.whl")):
        try:
            name, version, _build, wheel_tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if tags & set(wheel_tags):
            found.setdefault((str(name), canonicalize_version(version)), []).append(path)
    return found


def _has_wheel(entry: LockEntry, wheels: dict[tuple[str, str], list[Path]]) -> bool:
    return bool(_candidates(entry, wheels))


def _candidates(entry: LockEntry, wheels: dict[tuple[str, str], list[Path]]) -> list[Path]:
    return wheels.get((entry.name, canonicalize_version(entry.version)), [])


def wheel_inventory(wheelhouse: Path) -> list[dict[str, str | int]]:
    """Every wheel in the wheelhouse with its sha256 and size, sorted by name, for the manifest."""
    return [
        {"file": p.name, "sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(Path(wheelhouse).glob("*.whl"))
        if p.is_file()
    ]


# ---------------------------------------------------------------------------------------
# Filling


BuildKey = tuple[str, str, str, tuple[str, ...]]  # name, version, python, the pin's hashes


@dataclass
class FillReport:
    """What ``fill_wheelhouse`` did, file names only."""

    downloaded: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)  # wheels cra built from sdists
    built_from: dict[str, str] = field(default_factory=dict)  # built wheel -> its sdist
    present: list[str] = field(default_factory=list)  # already there: skipped
    not_needed: list[str] = field(default_factory=list)  # pins whose marker excludes python


def fill_wheelhouse(
    lock: Path,
    wheelhouse: Path,
    python: str,
    *,
    find_links: list[Path] | None = None,
    no_index: bool = False,
    log: Path | None = None,
    cache_dir: Path | None = None,
    unbuildable: dict[BuildKey, UnbuildableSdist] | None = None,
) -> FillReport:
    """Put a wheel for every pin of ``lock`` that applies to ``python`` into ``wheelhouse``.

    Pins that already have a compatible wheel there are skipped without touching the
    network; such a wheel whose hash the lock lacks was built by cra for another era
    (the index's files are all in the lock), and its hash is recorded like a new build's.
    The rest are downloaded in one ``pip download --no-deps --require-hashes`` (into a
    scratch folder, then moved in, so an interrupted run leaves no partial files). A pin
    that only has an sdist is built into a wheel here, and the lock gets that wheel's
    hash (see the module docstring). Raises ``MissingWheel`` naming every pin that still
    has no wheel.

    ``unbuildable`` (shared by the eras of one ``corpus add``): ``(name, version, python,
    the pin's hashes)`` -> the ``UnbuildableSdist`` of an sdist whose build failed. The
    hashes are part of the key because the files a pin may use depend on the lock's date:
    PyYAML 6.0's wheels for 3.11 were uploaded after 6.0 itself, so a lock as of mid-2022
    has only its sdist and one of 2023 has the wheel too. A lock pinning one of them
    fails at once with that error (its log the first build's) instead of building it
    again: on attrs (benchmarks/packaging.py, uv mode) the sdists of PyYAML 5.4.1 and 6.0
    (no wheel for 3.11 as of those dates) failed to build 16 times, in 8 eras and their fallback steps:
    333 s of the 820 s spent filling.
    """
    lock, wheelhouse = Path(lock), Path(wheelhouse)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    entries = read_lock(lock)
    report = FillReport()
    wheels = _wheels(wheelhouse, python)
    missing: list[int] = []  # indexes into entries
    recorded: dict[int, tuple[str, str, str]] = {}  # entry index -> (wheel, sha256, provenance)
    for index, e in enumerate(entries):
        if not e.applies_to(python):
            report.not_needed.append(f"{e.name}=={e.version}")
            continue
        candidates = _candidates(e, wheels)
        if not candidates:
            missing.append(index)
            continue
        digests = {p: sha256_file(p) for p in candidates}
        matching = [p for p, d in digests.items() if f"sha256:{d}" in e.hashes]
        chosen = matching[0] if matching else candidates[0]
        if not matching:
            # Every index file of a pinned version is in the lock's hash list, so a wheel of
            # that version that is not is one cra built from the sdist for another era.
            recorded[index] = (chosen.name, digests[chosen], "already in the wheelhouse")
        report.present.append(chosen.name)

    known = [
        (entries[i], unbuildable[key])
        for i in missing
        if unbuildable and (key := _build_key(entries[i], python)) in unbuildable
    ]
    if known:
        entry, error = known[0]
        raise UnbuildableSdist(
            f"{error.message} (an earlier era's build of {entry.name}=={entry.version}; not tried again)",
            names=tuple(dict.fromkeys(e.name for e, _ in known)),
            hint=error.hint,
        )

    if missing:
        index_args = [
            arg for p in find_links or [] for arg in ("--find-links", str(Path(p).resolve()))
        ]
        index_args += ["--no-index"] if no_index else []
        _download_missing(
            lock,
            [entries[i] for i in missing],
            wheelhouse,
            python,
            report,
            log,
            cache_dir,
            index_args,
            unbuildable,
        )
        wheels = _wheels(wheelhouse, python)
        for index in missing:
            e = entries[index]
            for wheel in _candidates(e, wheels):
                if wheel.name in report.built:
                    sdist = report.built_from.get(wheel.name, "its sdist")
                    recorded[index] = (wheel.name, sha256_file(wheel), f"built from {sdist}")
    if recorded:
        _add_built_hashes(lock, entries, recorded)

    wheels = _wheels(wheelhouse, python)
    still = [
        f"{entries[i].name}=={entries[i].version}"
        for i in missing
        if not _has_wheel(entries[i], wheels)
    ]
    if still:
        raise MissingWheel(
            f"no wheel for Python {python} in {wheelhouse} for: {', '.join(still)}",
            hint=f"pip downloaded files that do not fit this Python; {_see_log(log)}",
        )
    return report


def _download_missing(
    lock: Path,
    missing: list[LockEntry],
    wheelhouse: Path,
    python: str,
    report: FillReport,
    log: Path | None,
    cache_dir: Path | None,
    index_args: list[str],
    unbuildable: dict[BuildKey, UnbuildableSdist] | None = None,
) -> None:
    """Fetch (or build) a wheel for every missing pin in one pip run, then move them in.

    For the running Python that is ``pip wheel --require-hashes``: it downloads wheels
    where the index has them and builds the sdists it had to download (hash-checked
    first), using pip's wheel cache, so a rebuild for another era or a rerun is free. A
    resulting wheel whose hash is not in the lock is one pip built. For another Python
    pip cannot build, so ``pip download --python-version`` fetches files and sdists are
    built one by one with the running pip (pure-Python ones fit; others are refused).
    """
    env = _env(cache_dir)
    with tempfile.TemporaryDirectory(prefix=".cra-fill-", dir=wheelhouse.parent) as tmp:
        work = Path(tmp)
        sub = work / "missing.txt"
        # markers are already decided for the target python; pip would judge them by its own
        sub.write_text(
            "".join(
                f"{e.name}=={e.version} " + " ".join(f"--hash={h}" for h in e.hashes) + "\n"
                for e in missing
            )
        )
        got = work / "got"
        pip = [sys.executable, "-m", "pip"]
        common = ["--no-deps", "--require-hashes", "--prefer-binary", "--progress-bar", "off"]
        common += index_args
        if _is_running_python(python):
            cmd = [*pip, "wheel", *common, "-r", str(sub), "--wheel-dir", str(got)]
        else:
            cmd = [*pip, "download", *common, "--python-version", python, "-r", str(sub)]
            cmd += ["--dest", str(got)]
        code, out = _run(cmd, env=env, log=log, timeout=DOWNLOAD_TIMEOUT_S)
        if code != 0:
            failed = set(_failed_builds(out))
            pins = [f"{e.name}=={e.version}" for e in missing if e.name in failed]
            if pins:
                cause = _build_cause(out)
                message = (
                    f"no wheel of {', '.join(pins)} for Python {python}: the index has only an "
                    f"sdist and building it failed{': ' + cause if cause else ''}"
                )
                names = tuple(dict.fromkeys(e.name for e in missing if e.name in failed))
                error = UnbuildableSdist(message, names=names, hint=_see_log(log))
                if unbuildable is not None:
                    for e in missing:
                        if e.name in failed:
                            unbuildable[_build_key(e, python)] = error
                raise error
            raise MissingWheel(
                f"pip could not fetch or build the wheels of {lock.name}: {_lock_failure(out)}",
                hint=_see_log(log),
            )
        by_key = {(e.name, canonicalize_version(e.version)): e for e in missing}
        for path in sorted(got.iterdir()):
            if path.name.endswith(SDIST_SUFFIXES):
                sdist = path.name
                path = _build_wheel(path, missing, work / "built", env, log, python, index_args)
            elif path.name.endswith(".whl"):
                sdist = ""
            else:
                continue
            name, version, _b, _t = parse_wheel_filename(path.name)
            entry = by_key.get((str(name), canonicalize_version(version)))
            os.replace(path, wheelhouse / path.name)
            if (
                entry is not None
                and f"sha256:{sha256_file(wheelhouse / path.name)}" in entry.hashes
            ):
                report.downloaded.append(path.name)
            else:
                report.built.append(path.name)
                report.built_from[path.name] = sdist or f"the sdist of {name}=={version}"


def _build_key(entry: LockEntry, python: str) -> BuildKey:
    return (entry.name, canonicalize_version(entry.version), python, tuple(sorted(entry.hashes)))


_FAILED_BUILD = re.compile(
    r"Failed building wheel for (\S+)|Failed to build (?!one or more)(?!installable)([^\s(]\S*)"
    r"|Failed to build installable wheels for some pyproject\.toml based projects \(([^)]*)\)"
    r"|Could not build wheels for (\S+)"
)


def _failed_builds(output: str) -> list[str]:
    """Canonical names of the distributions pip says it could not build a wheel for."""
    names: list[str] = []
    for match in _FAILED_BUILD.finditer(output):
        for group in match.groups():
            for name in re.split(r"[,\s]+", group or ""):
                name = name.strip("'\"`")
                if name and canonicalize_name(name) not in names:
                    names.append(canonicalize_name(name))
    return names


def _build_cause(output: str) -> str | None:
    """The last line a failed build printed (between pip's "[N lines of output]" and
    "[end of output]"), which usually says why: a compiler error, a Python it refuses."""
    lines = output.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "[end of output]":
            for j in range(i - 1, -1, -1):
                text = lines[j].strip().lstrip("│").strip()
                if text and not text.startswith("running ") and "lines of output" not in text:
                    return text[:200]
            return None
    return None


def _build_wheel(
    sdist: Path,
    missing: list[LockEntry],
    out_dir: Path,
    env: dict[str, str],
    log: Path | None,
    python: str,
    index_args: list[str],
) -> Path:
    """Build one sdist into a wheel with the running pip; returns the wheel."""
    out_dir.mkdir(exist_ok=True)
    before = set(out_dir.iterdir())
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--progress-bar", "off"]
    cmd += [*index_args, "--wheel-dir", str(out_dir), str(sdist)]
    code, out = _run(cmd, env=env, log=log, timeout=DOWNLOAD_TIMEOUT_S)
    new = [p for p in out_dir.iterdir() if p not in before and p.name.endswith(".whl")]
    if code != 0 or len(new) != 1:
        raise MissingWheel(
            f"{sdist.name} has no wheel on the index and building one failed: {_lock_failure(out)}",
            hint=_see_log(log),
        )
    name, version, _b, tags = parse_wheel_filename(new[0].name)
    for e in missing:
        if e.name == name and canonicalize_version(e.version) == canonicalize_version(version):
            if not _target_tags(python) & set(tags):
                raise MissingWheel(
                    f"{e.name}=={e.version}: the wheel built from {sdist.name} ({new[0].name}) "
                    f"does not fit Python {python}",
                    hint="run cra under the target Python to build it",
                )
            return new[0]
    raise MissingWheel(f"building {sdist.name} gave {new[0].name}, which is not in the lock")


def _add_built_hashes(
    lock: Path, entries: list[LockEntry], recorded: dict[int, tuple[str, str, str]]
) -> None:
    """Append wheels' sha256 to their pins' ``--hash`` lists, atomically, with a note each.

    ``recorded`` maps an index of ``entries`` to (wheel file, sha256, where it came from).
    """
    lines = lock.read_text().splitlines()
    notes = []
    # from the bottom up, so earlier line numbers stay valid
    for index in sorted(recorded, key=lambda k: entries[k].last_line, reverse=True):
        entry = entries[index]
        wheel, digest, provenance = recorded[index]
        if f"sha256:{digest}" in entry.hashes:
            continue
        last = entry.last_line
        lines[last] = lines[last].rstrip() + " \\"
        lines.insert(last + 1, f"    --hash=sha256:{digest}")
        notes.append(f"# cra: {wheel} {provenance}: sha256:{digest}")
    if notes:
        text = "\n".join(lines) + "\n" + "".join(f"{n}\n" for n in sorted(notes))
        write_atomic(lock, text)


# ---------------------------------------------------------------------------------------
# Verifying


SMOKE_TEST = "def test_cra_smoke():\n    assert [1, 2] == [1, 2]\n"


def verify_wheelhouse(
    lock: Path,
    wheelhouse: Path,
    *,
    python: str | None = None,
    editable: Path | None = None,
    log: Path | None = None,
    use_uv: bool | None = None,
    smoke: bool = False,
    interpreter: str | None = None,
    stand_ins: Sequence[str] = (),
    find_links: list[Path] | None = None,
    no_index: bool = False,
) -> None:
    """Prove the wheelhouse installs ``lock`` with no index, in a throwaway virtualenv.

    First a quick look for pins with no wheel at all (names every one of them at once),
    then the real proof: an install of exactly the lock (``--no-deps``: the lock is a
    resolver's whole answer, and leaves the project itself out on purpose) with no index,
    binary only, hash-checked, with no pip configuration and no cache: uv when installed
    (``use_uv`` None), as the air-gapped side's environments use it, else pip. With
    ``editable`` (a checkout of the repo) it also installs that project editable, which
    needs the build back-end from the wheelhouse: the failure real repos hit offline.
    With ``smoke`` it runs the lock's pytest on a one-line test: an old era's pytest may
    install fine and still not run on this Python (pytest < 6.2 rewrites asserts in a way
    3.10 refuses). ``stand_ins`` (the released copy of the project that the lock left
    out) are installed into the throwaway environment for the smoke test only, from the
    index or ``find_links``: pytest and its plugins may import the project (pytest < 7 on
    attrs), and on the air-gapped side the checkout will be there. Raises
    ``MissingWheel`` naming the package, ``BrokenTools`` when the smoke test fails.
    """
    lock, wheelhouse = Path(lock), Path(wheelhouse)
    python = python or f"{sys.version_info[0]}.{sys.version_info[1]}"
    entries = read_lock(lock)
    wheels = _wheels(wheelhouse, python)
    absent = [
        f"{e.name}=={e.version}"
        for e in entries
        if e.applies_to(python) and not _has_wheel(e, wheels)
    ]
    if absent:
        raise MissingWheel(
            f"{wheelhouse} has no wheel for Python {python} for: {', '.join(absent)}",
            hint=f"fill it again from {lock.name} on the connected side (cra corpus add)",
        )
    env = _env(None)
    uv = find_uv() if use_uv is not False else None
    with tempfile.TemporaryDirectory(prefix="cra-verify-") as tmp:
        venv = Path(tmp) / "venv"
        cmd = [sys.executable, "-m", "virtualenv", "--quiet", "--no-download"]
        cmd += ["--no-periodic-update", "--no-setuptools", str(venv)]
        cmd += ["--no-seed"] if uv else []  # uv installs without a pip in the target
        if interpreter or not _is_running_python(python):
            cmd += ["--python", interpreter or python]
        code, out = _run(cmd, env=env, log=log, timeout=300)
        if code != 0:
            raise Failed(
                f"no throwaway virtualenv for Python {python}: {_lock_failure(out)}",
                hint=_see_log(log),
            )
        vpy = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
        offline = ["--no-index", "--find-links", str(wheelhouse.resolve())]
        if uv:
            install = [uv, "pip", "install", "--python", vpy, "--offline", *offline, "--no-cache"]
            cmd = [*install, "--no-build", "--no-deps", "--require-hashes", "-r", str(lock.resolve())]
            env = {**env, "UV_PYTHON_DOWNLOADS": "never"}
        else:
            # --no-compile: byte-compiling proves nothing about completeness and costs seconds
            offline += ["--no-cache-dir", "--no-compile", "--progress-bar", "off"]
            install = [vpy, "-m", "pip", "install", *offline]
            cmd = [*install, "--only-binary", ":all:", "--no-deps", "--require-hashes", "-r",
                   str(lock.resolve())]
        code, out = _run(cmd, env=env, log=log, timeout=INSTALL_TIMEOUT_S)
        if code != 0:
            _raise_install_failure(out, lock, wheelhouse, log)
        if editable is not None:
            cmd = [*install, "--no-deps", *(["--editable"] if not uv else ["-e"]), str(editable)]
            code, out = _run(cmd, env=env, log=log, timeout=INSTALL_TIMEOUT_S)
            if code != 0:
                what = _missing_name(out)
                raise MissingWheel(
                    f"editable install of {editable} fails offline"
                    + (f": the wheelhouse lacks {what}" if what else f": {_lock_failure(out)}"),
                    hint=f"its build back-end must be locked with the era; {_see_log(log)}",
                )
        if smoke and any(e.name == "pytest" for e in entries):
            if stand_ins:
                where = [a for link in find_links or [] for a in ("--find-links", str(Path(link).resolve()))]
                where += ["--no-index"] if no_index else []
                if uv:
                    cmd = [uv, "pip", "install", "--python", vpy, "--no-deps", *where, *stand_ins]
                else:
                    cmd = [vpy, "-m", "pip", "install", "--no-deps", "--progress-bar", "off", *where, *stand_ins]
                # a failure is in the log; the smoke test then says what could not import
                _run(cmd, env=_env(None), log=log, timeout=INSTALL_TIMEOUT_S)
            _smoke_test(vpy, Path(tmp), entries, python, log)


def _smoke_test(vpy: str, tmp: Path, entries: list[LockEntry], python: str, log: Path | None) -> None:
    """The lock's pytest must collect and pass a trivial test on this Python."""
    test = tmp / "smoke" / "test_cra_smoke.py"
    test.parent.mkdir()
    test.write_text(SMOKE_TEST, encoding="utf-8")
    (test.parent / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    env = _env(None) | {"PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp)}
    cmd = [vpy, "-m", "pytest", "-p", "no:cacheprovider", "-rA", test.name]
    code, out = _run(cmd, env=env, log=log, timeout=300, cwd=test.parent)
    if code != 0 or "1 passed" not in out:
        version = next((e.version for e in entries if e.name == "pytest"), "?")
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        raised = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Warning): ", ln)]
        why = (
            next((ln[1:].strip() for ln in lines if ln.startswith("E ")), None)
            or next((ln for ln in lines if ln.startswith(("ERROR ", "FAILED "))), None)
            or (raised[-1] if raised else _lock_failure(out))
        )
        raise BrokenTools(
            f"pytest {version} of this lock does not run on Python {python}: {why}",
            hint=_see_log(log),
        )


def _missing_name(output: str) -> str | None:
    """The requirement pip (or uv) found no file for."""
    match = re.search(
        r"(?:No matching distribution found for|Could not find a version that satisfies "
        r"the requirement)\s+(\S+)|Because (\S+) was not found in the provided package locations",
        output,
    )
    return (match[1] or match[2]) if match else None


def _raise_install_failure(output: str, lock: Path, wheelhouse: Path, log: Path | None) -> None:
    what = _missing_name(output)
    if what:
        raise MissingWheel(
            f"{wheelhouse} cannot install {what} offline (needed by {lock.name})",
            hint=f"fill it again from {lock.name} on the connected side; {_see_log(log)}",
        )
    if "DO NOT MATCH THE HASHES" in output or "Hash mismatch for" in output:
        bad = re.findall(r"^\s+(\S+==\S+) from (\S+)", output, re.MULTILINE)
        names = ", ".join(f"{req} ({Path(url).name})" for req, url in bad)
        names = names or ", ".join(re.findall(r"Hash mismatch for `([^`]+)`", output)) or "a wheel"
        raise Failed(
            f"{wheelhouse}: {names} does not match the hash in {lock.name}",
            hint="the file was altered or replaced; delete it and fill the wheelhouse again",
        )
    raise Failed(
        f"installing {lock.name} from {wheelhouse} with no index failed: {_lock_failure(output)}",
        hint=_see_log(log),
    )
