"""Offline Python environments, one per dependency era, built once and reused.

An environment is keyed by what builds it (``EnvSpec``: repo, the era lock's sha256, the
Python version, the platform), the way SWE-bench keys its images, so every commit of an
era shares one. It is built from the repo package's wheelhouse only: ``--no-index``,
hash-checked, binary-only (no sdist is ever built, so no code from a package runs while
installing), and with a clean pip environment (``appliance.pipenv``) so a machine-wide
``PIP_FIND_LINKS`` cannot quietly fill a gap in the wheelhouse.

``virtualenv`` makes the environment (about 0.8 s against 4.4 s for ``venv``); uv installs
into it when available (``--no-seed``: uv needs no pip in the target), pip otherwise.

Why the build happens in place, under a lock, with a marker written last, rather than in
a temp dir renamed into place: a virtualenv is not relocatable. pip and uv write the
environment's absolute path into every console script's shebang, and test suites do run
those scripts (``subprocess.run(["mypy", ...])``), so a renamed environment would have
broken scripts. A half-built environment is therefore a folder without the marker; the
next ``ensure_env`` removes it and starts again, and a concurrent caller waits on the lock.

Each worker slot gets a thin *overlay* environment on top (``ensure_overlay``): an empty
virtualenv whose ``.pth`` adds the era environment's site-packages. The project is
installed editable into the overlay, so the dependencies are installed once per era while
each slot's editable install points at its own worktree (an editable install names one
path; sharing it between slots would make slot 2 test slot 1's checkout).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance.atomic import write_atomic
from appliance.config import Home
from appliance.errors import Failed
from appliance.hashing import sha256_file
from appliance.pipenv import clean_pip_env

ENV_LAYOUT = 1  # bump when the way environments are built changes: old ones are rebuilt
MARKER = ".cra-env.json"
INSTALL_TIMEOUT_S = 1800.0


class EnvError(Failed):
    """An environment could not be built; ``log`` holds the installer's output."""

    def __init__(self, message: str, *, log: Path | None = None, hint: str | None = None):
        self.log = log
        super().__init__(
            message,
            path=log,
            hint=hint or ("the installer's output is in this log" if log else None),
        )


@dataclass(frozen=True)
class EnvSpec:
    """Everything that decides what an environment contains; ``key`` is its hash."""

    repo: str
    lock_sha256: str
    python: str  # "3.11"
    platform: str  # sysconfig.get_platform(), e.g. "linux-x86_64"

    @property
    def key(self) -> str:
        blob = json.dumps([ENV_LAYOUT, self.repo, self.lock_sha256, self.python, self.platform])
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @classmethod
    def for_lock(cls, repo: str, lock_path: Path, python: str | None = None) -> EnvSpec:
        return cls(
            repo=repo,
            lock_sha256=sha256_file(lock_path),
            python=python or current_python(),
            platform=sysconfig.get_platform(),
        )


def current_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def env_dir(home: Home, spec: EnvSpec) -> Path:
    return home.envs / spec.key


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def find_uv() -> str | None:
    """uv from PATH, or the one installed next to the running Python (``cra[fast]``)."""
    found = shutil.which("uv")
    if found:
        return found
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return str(beside)
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None


def find_python(version: str) -> str:
    """An interpreter for ``version``: the running one when it matches, else ``pythonX.Y``."""
    if version == current_python():
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        raise EnvError(
            f"Python {version} is not installed on this machine",
            hint=f"install python{version}, or repackage the repo with --python {current_python()}",
        )
    return found


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock``: held by one process (or thread) at a time, freed on death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_logged(argv: Sequence[str], log: Path, *, env: dict[str, str], what: str) -> None:
    """Run an installer step, appending its command and output to ``log``; raise EnvError."""
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(str(a) for a in argv)}\n")
        fh.flush()
        try:
            proc = subprocess.run(
                [str(a) for a in argv], stdout=fh, stderr=subprocess.STDOUT, env=env,
                timeout=INSTALL_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            fh.write(f"\n[cra] timed out after {INSTALL_TIMEOUT_S:.0f}s\n")
            raise EnvError(f"{what} timed out after {INSTALL_TIMEOUT_S:.0f}s", log=log) from None
        fh.write(f"[cra] exit {proc.returncode}\n")
    if proc.returncode != 0:
        raise EnvError(f"{what} failed (exit {proc.returncode})", log=log)


def installer_env(home: Home) -> dict[str, str]:
    """The environment every pip / uv run of cra gets: no pip config, no downloads."""
    cache = home.var / "cache" / "uv"
    return clean_pip_env(
        {
            "UV_CACHE_DIR": str(cache),  # on the same disk as var/envs: uv hardlinks from it
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_OFFLINE": "1",
            "PYTHONNOUSERSITE": "1",
        }
    )


def lock_has_hashes(lock_path: Path) -> bool:
    return "--hash=" in lock_path.read_text(encoding="utf-8", errors="replace")


def read_marker(env: Path) -> dict[str, object] | None:
    """The marker of a finished environment (what built it), or None."""
    return _read_marker(env)


def _read_marker(env: Path) -> dict[str, object] | None:
    try:
        data = json.loads((env / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def ensure_env(
    home: Home,
    spec: EnvSpec,
    lock_path: Path,
    wheelhouse: Path,
    *,
    log: Path | None = None,
    use_uv: bool | None = None,
) -> Path:
    """The Python of the environment for ``spec``, building it first if needed.

    Safe to call from many workers at once: one builds, the others wait and reuse it.
    Raises ``EnvError`` (with the log) when the wheelhouse cannot satisfy the lock.
    """
    env = env_dir(home, spec)
    marker = _read_marker(env)
    if marker is not None and marker.get("key") == spec.key:
        return env_python(env)
    log = log or home.logs / "envs" / f"{spec.key}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if not lock_path.is_file():
        raise EnvError(f"lock file {lock_path} is missing", hint="re-import the repo package")
    if sha256_file(lock_path) != spec.lock_sha256:
        raise EnvError(
            f"lock file {lock_path} does not match its recorded sha256",
            hint="the repo package was altered; re-import it from its bundle",
        )
    with file_lock(home.envs / f"{spec.key}.lock"):
        marker = _read_marker(env)
        if marker is not None and marker.get("key") == spec.key:
            return env_python(env)
        if env.exists():  # a build that died half-way
            shutil.rmtree(env)
        started = time.monotonic()
        log.write_text(f"[cra] building environment {spec.key} for {spec.repo}\n", encoding="utf-8")
        uv = find_uv() if use_uv is not False else None
        if use_uv and uv is None:
            raise EnvError("uv was asked for but is not installed", hint="pip install 'cra[fast]'")
        try:
            _build(home, env, spec, lock_path, wheelhouse, log, uv)
        except BaseException:
            shutil.rmtree(env, ignore_errors=True)
            raise
        info = asdict(spec) | {
            "key": spec.key,
            "layout": ENV_LAYOUT,
            "installer": "uv" if uv else "pip",
            "hash_checked": lock_has_hashes(lock_path),
            "seconds": round(time.monotonic() - started, 3),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_atomic(env / MARKER, json.dumps(info, indent=2))
    return env_python(env)


def _build(
    home: Home, env: Path, spec: EnvSpec, lock_path: Path, wheelhouse: Path, log: Path,
    uv: str | None,
) -> None:
    base = find_python(spec.python)
    ienv = installer_env(home)
    # uv installs into an environment without pip; pip needs itself seeded (from the
    # wheels virtualenv bundles: --no-download).
    seed = ["--no-seed"] if uv else ["--no-download", "--no-setuptools"]
    _run_logged(
        [base, "-m", "virtualenv", "--quiet", "--no-periodic-update", *seed,
         "--app-data", home.var / "cache" / "virtualenv", "-p", base, env],
        log, env=ienv, what="virtualenv",
    )
    hashes = lock_has_hashes(lock_path)
    if not hashes:
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"[cra] WARNING: {lock_path} has no --hash lines; installing unchecked\n")
    python = env_python(env)
    # --no-deps: a lock is a resolver's whole answer, installed as it is. It leaves out
    # the project itself (the checkout is installed editable on top), which a test tool
    # may depend on: resolving dependencies again would go looking for it.
    if uv:
        argv = [
            uv, "pip", "install", "--offline", "--no-index", "--find-links", wheelhouse,
            "--python", python, "--no-build", "--no-deps", "--compile-bytecode",
            *(["--require-hashes"] if hashes else []), "-r", lock_path,
        ]
    else:
        argv = [
            python, "-m", "pip", "install", "--no-index", "--find-links", wheelhouse,
            "--only-binary", ":all:", "--no-deps", "--no-cache-dir",
            *(["--require-hashes"] if hashes else []), "-r", lock_path,
        ]
    _run_logged(argv, log, env=ienv, what=f"installing {lock_path.name} from {wheelhouse}")


def site_dirs(python: Path) -> list[str]:
    """The site-packages folders of an environment (purelib, and platlib when different)."""
    out = subprocess.run(
        [str(python), "-I", "-c",
         ("import json, sysconfig; p = sysconfig.get_paths();"
          " print(json.dumps(sorted({p['purelib'], p['platlib']})))")],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if out.returncode != 0:
        raise EnvError(f"{python} does not run: {out.stderr.strip()[-300:]}")
    return list(json.loads(out.stdout))


def ensure_overlay(home: Home, base_python: Path, dest: Path, *, log: Path) -> Path:
    """An empty virtualenv at ``dest`` that sees everything installed in ``base_python``'s.

    Idempotent: an overlay whose marker names the same base is reused as it is.
    """
    base_env = base_python.parent.parent
    marker = _read_marker(dest)
    if marker is not None and marker.get("base") == str(base_env):
        return env_python(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    interpreter = find_python(_env_version(base_env))
    _run_logged(
        [interpreter, "-m", "virtualenv", "--quiet", "--no-periodic-update", "--no-seed",
         "--app-data", home.var / "cache" / "virtualenv", "-p", interpreter, dest],
        log, env=installer_env(home), what="virtualenv (overlay)",
    )
    python = env_python(dest)
    # addsitedir (not a bare path line) so the base's own .pth files run too: editable
    # finders and distutils shims of the dependencies keep working.
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in site_dirs(base_python))
    for own in site_dirs(python):
        Path(own, "_cra_base_env.pth").write_text(lines, encoding="utf-8")
    write_atomic(dest / MARKER, json.dumps({"base": str(base_env), "layout": ENV_LAYOUT}))
    return python


def _env_version(env: Path) -> str:
    """X.Y of a virtualenv, from its pyvenv.cfg (no interpreter start needed)."""
    for line in (env / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() in {"version_info", "version"}:
            parts = value.strip().split(".")
            return f"{parts[0]}.{parts[1]}"
    return current_python()



# ----------------------------------------------------------------------------- whose code runs

# Runs in the environment under test; ``find_spec`` locates a top-level package without
# executing it, and its ``origin`` is what the module's ``__file__`` would be.
_IMPORT_PROBE = """\
import importlib.util, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        spec = importlib.util.find_spec(name)
    except Exception as exc:
        out[name] = {"error": type(exc).__name__ + ": " + str(exc)}
        continue
    if spec is not None:
        out[name] = {"origin": spec.origin, "locations": list(spec.submodule_search_locations or [])}
print("CRA-IMPORTS " + json.dumps(out))
"""
_NOT_PACKAGES = frozenset({"tests", "test", "testing", "docs", "doc", "build", "dist",
                           "benchmarks", "benchmark", "bench", "examples", "example", "scripts",
                           "tools", "ci", "changelog.d", "conftest", "setup", "noxfile", "tasks",
                           "fabfile", "toxfile", "dodo", "bootstrap"})


def project_import_names(worktree: Path) -> list[str]:
    """The top-level import names a checkout provides: packages (and modules) at its root
    and under ``src/``, less test, docs and tool folders."""
    names: set[str] = set()
    for base in (worktree, worktree / "src"):
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            stem = entry.name.removesuffix(".py")
            if not stem.isidentifier() or stem in _NOT_PACKAGES or stem.startswith("_"):
                continue
            if entry.is_dir(follow_symlinks=False):
                # under src/ a folder without __init__.py is a namespace package
                if base != worktree or os.path.exists(os.path.join(entry.path, "__init__.py")):
                    names.add(stem)
            elif entry.name.endswith(".py") and entry.is_file(follow_symlinks=False):
                names.add(stem)
    return sorted(names)


@dataclass
class ForeignImport:
    """A project import name that resolves outside the checkout: another copy would be tested."""

    name: str
    found: str  # the file (or folders) it resolves to

    def __str__(self) -> str:
        return f"{self.name} resolves to {self.found}"


def foreign_imports(
    python: Path, worktree: Path, *, env: dict[str, str], readonly: Sequence[Path] = (),
    level: str | None = None, scratch: Path | None = None,
) -> list[ForeignImport]:
    """The project's import names that ``python``, started in ``worktree`` as pytest is,
    finds outside the checkout (a released copy of the project in the environment, ahead
    of the editable install). Empty when the checkout is what the tests will import.

    Runs in the sandbox like the tests themselves. A name found nowhere is not reported
    (pytest will say so itself); a namespace package passes when one of its folders lies
    in the checkout. Raises ``EnvError`` when the interpreter does not even start.
    """
    from harness.sandbox import Limits, run_sandboxed

    names = project_import_names(worktree)
    if not names:
        return []
    result = run_sandboxed(
        [str(python), "-c", _IMPORT_PROBE, *names], cwd=worktree, writable=[],
        readonly=[*readonly, worktree],
        env=env, limits=Limits(timeout_s=120), scratch=scratch, level=level,
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("CRA-IMPORTS ")), None)
    if result.returncode != 0 or line is None:
        raise EnvError(f"{python} cannot look up the project's packages: "
                       f"{(result.stderr.strip().splitlines() or ['exit ' + str(result.returncode)])[-1]}")
    found = json.loads(line.removeprefix("CRA-IMPORTS "))
    root = worktree.resolve()

    def inside(path: str | None) -> bool:
        if not path:
            return False
        try:
            Path(path).resolve().relative_to(root)
        except (ValueError, OSError):
            return False
        return True

    out = []
    for name in names:
        spec = found.get(name)
        if not isinstance(spec, dict) or "error" in spec:
            continue
        origin, locations = spec.get("origin"), spec.get("locations") or []
        if origin and origin != "namespace" and Path(origin).is_absolute():
            if not inside(origin):
                out.append(ForeignImport(name, origin))
        elif locations and not any(inside(loc) for loc in locations):
            out.append(ForeignImport(name, ", ".join(locations)))
    return out
