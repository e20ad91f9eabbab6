"""The sandbox: every test run, and later every piece of model output, executes through here.

Code from a stranger's repository, or from a model, is untrusted. It may loop forever,
fork-bomb, allocate without end, flood its output, daemonise with ``setsid`` to outlive the
run, write to ``~`` or ``/tmp`` or a sibling worktree, plant a git hook, or open a socket.
Whatever it does, the caller gets a :class:`SandboxResult` back; the sandbox only raises
(:class:`SandboxError`) when the sandbox itself cannot start, which is a harness bug or a
machine problem, never the child's fault.

Three isolation levels, best first (:func:`isolation_level` probes once and caches):

``bwrap``
    bubblewrap with every namespace unshared (network, pid, ipc, uts, user, cgroup), all
    capabilities dropped, nested user namespaces disabled, and a root that holds only what
    the run needs (:func:`bind_plan`): the system folders executables and shared libraries
    come from (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, symlinks kept as symlinks), a few
    files of ``/etc`` (the loader cache, alternatives, time zone, name service, copied into
    one folder per process; ``passwd`` and ``group`` are made up), the installation of every Python interpreter the
    run uses (worked out from the interpreter itself, see :func:`python_binds`), the
    command's own install prefix when it lives elsewhere, a fresh ``/dev``, a private
    ``/proc`` (only the sandbox's own processes), empty tmpfs over ``/tmp`` and ``/run``;
    then the ``writable`` paths bound read-write, the ``readonly`` paths bound read-only on
    top (outer paths first, so a read-only ``.git`` inside a writable worktree wins) and
    the per-run scratch folder (HOME, TMPDIR) bound read-write. Nothing else exists inside:
    no home folder, no ``/root``, no ``/etc/shadow``, no ``CRA_HOME`` beyond the paths a
    caller names (so no database, logs, models or other worktree slots). ``--cap-drop ALL``
    matters: run by root, bwrap otherwise keeps full capabilities in its user namespace.
``unshare``
    ``unshare`` with new network, pid, mount (private ``/proc``), ipc and uts namespaces
    (``--map-root-user`` when not root), a tiny init shim as pid 1 so the command keeps
    ordinary signal semantics, plus rlimits. No filesystem isolation: the host is readable.
``rlimits``
    rlimits alone: no network or filesystem isolation; ``cra doctor`` warns.

Below ``bwrap`` the host cannot be hidden, so model-written code refuses to run there
unless the user allows it (:func:`require_full_isolation`, ``--allow-weak-sandbox``).

A run may also get a *channel* (``channel_env``): a pipe whose write end the child
inherits, its number in the named environment variable; what the child writes there
comes back in ``SandboxResult.channel``. cra's pytest plugin reports each test phase
through it as it happens (``harness.testrun``), out of reach of a file the code under
test could find and rewrite afterwards.

At every level: rlimits via ``preexec_fn`` (address space, CPU, processes, file size, open
files, core dumps off), stdin from ``/dev/null``, a new session, output read through a
selector with the cap enforced while reading (memory stays bounded whatever the child
writes), a fresh scratch HOME and TMPDIR removed afterwards, and a wall-clock timeout.

Killing the whole tree, daemons included:

* ``bwrap`` and ``unshare`` run the command in a new pid namespace whose init dies with its
  parent (``--die-with-parent`` / ``--kill-child``); SIGKILL to our child's process group
  takes the namespace down, and the kernel kills everything inside it. When the command
  exits normally the namespace ends too, so a daemon left behind never survives the run.
* Where a pids cgroup can be created (root with a writable cgroupfs, as on this machine),
  each run gets its own cgroup: it caps the number of processes exactly and lets us kill
  every member.
* Otherwise (``rlimits`` level without a cgroup): SIGKILL to the process group, then sweeps
  of ``/proc`` for processes whose environment carries this run's ``CRA_SANDBOX_ID``
  marker. A child that both scrubs its environment and leaves the session escapes that
  sweep; that is the price of the lowest level and why doctor warns about it.

The process limit and root: the kernel never applies ``RLIMIT_NPROC`` to host uid 0, even
inside a user namespace that maps the sandbox user to root (checked on this machine). So
for root the per-run pids cgroup is what stops a fork bomb; for other users RLIMIT_NPROC
does (per sandbox under a user namespace, but still bounded by the user's host-wide count).
Root without a writable cgroupfs has no process limit: :func:`sandbox_info` reports
``process_limit == "none"`` and doctor should warn. ``CRA_SANDBOX_CGROUP=0`` turns the
per-run cgroups off (the tests use it to exercise the /proc sweep).

A harness killed outright (SIGKILL, OOM) cannot clean up after itself. At the namespace
levels its sandboxes die with it (parent-death signals); the next cra process to run a
sandbox kills what is left in cgroups, and removes scratch folders, whose owner pid is gone.

Costs and caveats: ``preexec_fn`` forces a full fork of the calling process (a few ms) and
is documented as unsafe with threads; the function it runs is a handful of syscalls, and
runs from worker threads are tested. Moving into a cgroup costs an RCU grace period
(about 10 ms here); a bwrap network namespace about 20 ms.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import errno
import functools
import os
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import ConfigError, Failed

LEVELS = ("bwrap", "unshare", "rlimits")
MARKER_VAR = "CRA_SANDBOX_ID"

# How long to keep reading after the main process ended or was killed: output still in the
# pipes comes through, a stray process holding them open does not stall the run.
_DRAIN_GRACE_S = 1.0
# Upper bound on how late we notice "main process exited, pipes still open".
_POLL_S = 0.1
_CHUNK = 65536
CHANNEL_BYTES = 64 << 20  # a channel carries one short line per test phase

_PR_SET_PDEATHSIG = 1

# Where executables, the dynamic loader and shared libraries come from (FHS). A merged-/usr
# system has /bin, /lib* as symlinks into /usr: they are recreated as symlinks.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc the loader, Python and git read: the library cache, Debian's alternatives
# (many /usr/bin programs are links into it), time zone, name service and protocol tables,
# Debian Python's own sitecustomize, the CA bundle: copied once per process into the folder
# bound as /etc (``etc_dir``), with a made-up passwd and group; nothing else (shadow, ssh
# keys, ssl/private, ...) exists inside.
ETC_ENTRIES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone",
    "nsswitch.conf", "host.conf", "hosts", "gai.conf", "protocols", "services", "mime.types",
    "ssl/certs", "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf",
)
ETC_GLOBS = ("python3*",)
# A .pth file names extra import folders; it may have been written by code that ran in the
# sandbox (an editable install's build), so only folders that are package folders are
# believed: a .pth naming "/root" binds nothing.
_PTH_DIR_NAMES = frozenset({"site-packages", "dist-packages"})


class SandboxError(Failed):
    """The sandbox itself could not start (bad paths, a forced level that is missing)."""


@dataclass
class Limits:
    """Resource limits of one sandboxed run. Every field is enforced by the kernel except
    ``timeout_s`` (our wall clock) and ``output_bytes`` (our reader)."""

    timeout_s: float = field(default=300.0, metadata={"help": "wall clock; kills the whole tree"})
    cpu_s: int = field(default=600, metadata={"help": "RLIMIT_CPU per process (SIGXCPU)"})
    memory_bytes: int = field(default=4 << 30, metadata={"help": "RLIMIT_AS per process"})
    processes: int = field(
        default=256,
        metadata={"help": "pids cgroup where one can be made, else RLIMIT_NPROC (per uid)"},
    )
    file_bytes: int = field(default=256 << 20, metadata={"help": "RLIMIT_FSIZE (SIGXFSZ/EFBIG)"})
    open_files: int = field(default=1024, metadata={"help": "RLIMIT_NOFILE"})
    output_bytes: int = field(
        default=4 << 20, metadata={"help": "stdout and stderr cap, each; excess dropped"}
    )

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_bytes", "processes", "file_bytes",
                     "open_files", "output_bytes"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"sandbox limit {name} must be positive, got {getattr(self, name)!r}",
                    hint="fix the [sandbox] value in cra.toml",
                )


@dataclass
class SandboxResult:
    """How a sandboxed run ended. Every ending, however violent, is one of these.

    ``returncode`` follows :mod:`subprocess`: negative ``-N`` when the command died of
    signal N (bwrap and the unshare shim report that as ``128+N``; it is translated back, so a
    command that itself exits 129..192 under those levels reads as a signal), ``None`` when
    the command never started (``reason == "not found"``).
    ``killed``: the command did not exit on its own, it ended by a signal.
    ``reason``: ``None`` for an ordinary exit, else "timeout", "not found", "cannot
    execute", "cpu", "file size", "memory" (best effort: an error exit whose stderr ends in
    MemoryError, bad_alloc or ENOMEM) or "signal N". A script whose interpreter is missing
    is "not found" at the rlimits level and an ordinary error exit (bwrap: 1, unshare: 127)
    with the message on stderr at the others.
    """

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed: bool
    duration_s: float
    output_truncated: bool
    isolation: str
    reason: str | None
    channel: bytes = b""  # what the child wrote to its channel (``channel_env``)
    channel_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class SandboxInfo:
    """What ``cra doctor`` prints: the active level, what else works, and the gaps."""

    level: str
    available: tuple[str, ...]
    process_limit: str  # "cgroup" | "rlimit" | "none"
    warnings: tuple[str, ...]


# --------------------------------------------------------------------------- probing


def _probe(argv: list[str]) -> bool:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@functools.cache
def _bwrap_flags() -> tuple[str, ...] | None:
    """The bwrap namespace flags that work here, strongest first, or None."""
    exe = shutil.which("bwrap")
    if exe is None:
        return None
    common = ("--die-with-parent", "--new-session", "--cap-drop", "ALL")
    mounts = ("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")
    candidates = (
        # A real user namespace, none nested inside it, a size cap on the tmpfs (bwrap 0.8).
        (("--unshare-all", "--unshare-user", "--disable-userns", *common), True),
        # Older bwrap, or no user namespaces (root in a container): still no capabilities.
        (("--unshare-all", *common), False),
    )
    for flags, modern in candidates:
        size = ("--size", "1048576") if modern else ()
        if _probe([exe, *flags, *mounts, *size, "--tmpfs", "/tmp", "--", "true"]):
            return (exe, *flags)
    return None


@functools.cache
def _unshare_flags() -> tuple[tuple[str, ...], bool] | None:
    """(unshare argv prefix, has pid namespace) that works here, or None."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    user = ("--map-root-user",) if os.geteuid() != 0 else ()
    full = (exe, *user, "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child",
            "--mount-proc")
    if _probe([*full, "true"]):
        return full, True
    net_only = (exe, *user, "--net")
    if _probe([*net_only, "true"]):
        return net_only, False
    return None


def _own_cgroup_dirs() -> list[Path]:
    """Directories of this process's pids cgroup (v1 first, then the v2 unified tree)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found: list[Path] = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if "pids" in controllers.split(","):
            found.insert(0, Path("/sys/fs/cgroup/pids") / rel)
        elif controllers == "":
            found.append(Path("/sys/fs/cgroup") / rel)
    return found


def _cgroup_ready(parent: Path) -> bool:
    """True when children of ``parent`` get a ``pids.max`` we may write."""
    if not (parent / "cgroup.procs").is_file():  # not a cgroup (a hybrid's bare tmpfs)
        return False
    if (parent / "cgroup.subtree_control").exists():  # v2: pids must be delegated
        try:
            if "pids" not in (parent / "cgroup.subtree_control").read_text().split():
                (parent / "cgroup.subtree_control").write_text("+pids")
        except OSError:
            return False
    probe = parent / f"cra-sbx-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        if not (probe / "pids.max").is_file():  # the kernel makes it, or there is no pids
            return False
        (probe / "pids.max").write_text("8")
        return True
    except OSError:
        return False
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


def _cgroup_parent() -> Path | None:
    """Where per-run pids cgroups go, or None when this machine gives us none.

    ``CRA_SANDBOX_CGROUP=0`` turns them off (tests use it to exercise the /proc sweep).
    """
    if os.environ.get("CRA_SANDBOX_CGROUP") == "0":
        return None
    return _probe_cgroup_parent()


@functools.cache
def _probe_cgroup_parent() -> Path | None:
    for parent in _own_cgroup_dirs():
        if parent.is_dir() and _cgroup_ready(parent):
            _remove_stale_cgroups(parent)
            return parent
    return None


def _remove_stale_cgroups(parent: Path) -> None:
    """Run cgroups left by a cra process that died (named cra-sbx-<pid>-<id>): whatever
    still runs in them (a daemon that outlived a SIGKILLed harness) is killed, then the
    cgroup removed."""
    for child in parent.glob("cra-sbx-*"):
        try:
            owner = int(child.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if Path(f"/proc/{owner}").exists():
            continue
        stale = _RunCgroup.adopt(child)
        stale.kill_all()
        stale.remove()


def available_levels() -> tuple[str, ...]:
    """Every level that works on this machine, best first (``rlimits`` always works)."""
    levels = []
    if _bwrap_flags() is not None:
        levels.append("bwrap")
    if _unshare_flags() is not None:
        levels.append("unshare")
    levels.append("rlimits")
    return tuple(levels)


def isolation_level() -> str:
    """The best level here: "bwrap" | "unshare" | "rlimits" (probed once, cached)."""
    return available_levels()[0]


def process_limit_mechanism() -> str:
    """How ``Limits.processes`` is enforced here: "cgroup", "rlimit" or "none" (root)."""
    if _cgroup_parent() is not None:
        return "cgroup"
    return "none" if os.geteuid() == 0 else "rlimit"


def sandbox_info() -> SandboxInfo:
    level = isolation_level()
    warnings: list[str] = []
    if level == "unshare":
        warnings.append("no bubblewrap: no filesystem isolation (install Debian's bubblewrap)")
    elif level == "rlimits":
        warnings.append("no namespaces: sandboxed code has network and filesystem access "
                        "(install bubblewrap, allow user namespaces)")
    limit = process_limit_mechanism()
    if limit == "none":
        warnings.append("running as root without a writable pids cgroup: the process limit "
                        "is not enforced (the kernel exempts uid 0 from RLIMIT_NPROC)")
    elif limit == "rlimit" and level == "rlimits":
        warnings.append("process limit is RLIMIT_NPROC over all of this user's processes")
    return SandboxInfo(level, available_levels(), limit, tuple(warnings))


def require_full_isolation(level: str | None, *, allow_weak: bool, what: str) -> str:
    """The level ``what`` (model-written code) will run at; raises unless it hides the host.

    Below ``bwrap`` the sandboxed code can read the host's files (home folders, CRA_HOME,
    ``/etc/shadow``) and print them into logs and training data. Raises
    :class:`WeakSandbox` unless ``allow_weak`` (``--allow-weak-sandbox``); the caller then
    records the returned level with everything the run stores.
    """
    chosen = level or isolation_level()
    if chosen != "bwrap" and not allow_weak:
        raise WeakSandbox(
            f"{what} would run at sandbox level {chosen!r}, which cannot hide the host's files",
            hint="install bubblewrap (Debian: bubblewrap) and allow user namespaces, or pass "
                 "--allow-weak-sandbox to accept it; every record made so says so",
        )
    return chosen


# --------------------------------------------------------------------------- bind list


def _venv_root(python: Path) -> Path | None:
    root = python.absolute().parent.parent
    return root if (root / "pyvenv.cfg").is_file() else None


def _venv_home(venv: Path) -> Path | None:
    """The base interpreter's prefix of a virtualenv, from its ``pyvenv.cfg`` ``home``."""
    try:
        text = (venv / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "home" and value.strip():
            return Path(value.strip()).parent  # home names the bin/ folder
    return None


def _site_dirs(root: Path) -> list[Path]:
    return sorted(
        [*root.glob("lib/python*/site-packages"), *root.glob("lib64/python*/site-packages"),
         *root.glob("lib/python*/dist-packages"), *root.glob("Lib/site-packages")]
    )


_ADDSITEDIR = re.compile(r"""addsitedir\(\s*(?:r?)(['"])(.+?)\1""")


def _pth_dirs(site_dir: Path, seen: set[Path]) -> list[Path]:
    """Folders the ``.pth`` files of ``site_dir`` add to ``sys.path``, read, never run:
    path lines, and the folder of an ``import site; site.addsitedir('...')`` line (cra's
    overlays chain to their base environment that way), whose own ``.pth`` files count too."""
    if site_dir in seen:
        return []
    seen.add(site_dir)
    found: list[Path] = []
    for pth in sorted(site_dir.glob("*.pth")):
        try:
            lines = pth.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(("import ", "import\t")):
                for _, target in _ADDSITEDIR.findall(line):
                    extra = Path(target)
                    if extra.is_absolute() and extra.is_dir():
                        found.append(extra)
                        found += _pth_dirs(extra.resolve(), seen)
                continue
            extra = site_dir / line
            if extra.is_dir():
                found.append(extra)
    return found


def python_binds(python: Path) -> list[Path]:
    """Folders the interpreter ``python`` needs, worked out from its files, never by running it.

    Its virtualenv (``pyvenv.cfg`` beside ``bin/``), the base installation (``pyvenv.cfg``'s
    ``home``, and the prefix its resolved executable sits in: ``PREFIX/bin/pythonX.Y``,
    which holds the standard library and ``libpython``), and the package folders the
    ``.pth`` files of their ``site-packages`` add. Running the interpreter to ask it would
    execute a ``.pth`` an earlier sandboxed build may have planted, outside the sandbox;
    hence the reading. Only folders named site-packages or dist-packages are taken from
    ``.pth`` files (see ``_PTH_DIR_NAMES``). Paths that do not exist are left out.
    """
    roots: list[Path] = []
    venv = _venv_root(python)
    if venv is not None:
        roots.append(venv)
        home = _venv_home(venv)
        if home is not None:
            roots.append(home)
    try:
        real = python.resolve()
    except OSError:
        real = python.absolute()
    roots.append(real.parent.parent)
    roots = [r.resolve() for r in roots if r.is_dir()]
    binds = list(dict.fromkeys(roots))
    seen: set[Path] = set()
    for root in roots:
        for site_dir in _site_dirs(root):
            for extra in _pth_dirs(site_dir.resolve(), seen):
                extra = extra.resolve()
                if extra.name in _PTH_DIR_NAMES or any(_is_under(extra, r) for r in roots):
                    binds.append(extra)
    return [b for b in dict.fromkeys(binds) if b != Path("/") and b.is_dir()]


def _looks_like_python(exe: Path) -> bool:
    return any(re.fullmatch(r"python[\d.]*", p.name) for p in {exe, exe.resolve()})


@dataclass(frozen=True)
class BindPlan:
    """What exists inside a ``bwrap`` sandbox, besides ``/dev``, ``/proc``, ``/tmp``, ``/run``.

    ``symlinks``: (target, path) recreated as links (``/bin -> usr/bin``); ``system``:
    system folders bound read-only; ``etc``: the folder bound read-only as ``/etc``
    (:func:`etc_dir`); ``readonly`` / ``writable``: the run's own paths (interpreters, the
    command's prefix, the caller's lists).
    """

    symlinks: tuple[tuple[str, Path], ...]
    system: tuple[Path, ...]
    etc: Path
    readonly: tuple[Path, ...]
    writable: tuple[Path, ...]

    def visible(self) -> list[Path]:
        return [*self.system, Path("/etc"), *self.readonly, *self.writable,
                *(link for _, link in self.symlinks)]


def _system_binds() -> tuple[tuple[tuple[str, Path], ...], tuple[Path, ...]]:
    links: list[tuple[str, Path]] = []
    dirs: list[Path] = []
    for path in (Path(d) for d in SYSTEM_DIRS):
        if path.is_symlink():
            links.append((os.readlink(path), path))
        elif path.exists():
            dirs.append(path)
    return tuple(links), tuple(dirs)


_ETC: dict[int, Path] = {}


def etc_dir() -> Path:
    """This process's stand-in for ``/etc``: copies of ``ETC_ENTRIES`` (symlinks kept as
    symlinks) and a made-up ``passwd``/``group`` naming only root, the sandbox user and
    nobody. Made once per process (a bind per file costs about 2 ms each here; one folder
    costs one), removed at exit, and by the next cra process if this one is killed."""
    made = _ETC.get(os.getpid())
    if made is not None and made.is_dir():
        return made
    parent = Path(tempfile.gettempdir())
    _remove_stale_scratch(parent.resolve())
    etc = Path(tempfile.mkdtemp(prefix=f"cra-sbx-{os.getpid()}-etc-", dir=parent)).resolve()
    host = Path("/etc")
    entries = [host / e for e in ETC_ENTRIES]
    for pattern in ETC_GLOBS:
        entries += sorted(host.glob(pattern))
    for src in entries:
        dest = etc / src.relative_to(host)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dest)
            elif src.is_dir():
                shutil.copytree(src, dest, symlinks=True)
            elif src.is_file():
                shutil.copy2(src, dest)
        except OSError:
            continue  # unreadable or gone: the sandbox does without it
    uid, gid = os.geteuid(), os.getegid()
    users = ["root:x:0:0:root:/nonexistent:/bin/sh"]
    groups = ["root:x:0:"]
    if uid != 0:
        users.append(f"cra:x:{uid}:{gid}:cra sandbox:/nonexistent:/bin/sh")
    if gid != 0:
        groups.append(f"cra:x:{gid}:")
    users.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
    groups.append("nogroup:x:65534:")
    (etc / "passwd").write_text("\n".join(users) + "\n", encoding="utf-8")
    (etc / "group").write_text("\n".join(groups) + "\n", encoding="utf-8")
    _ETC[os.getpid()] = etc
    atexit.register(_rmtree, etc)
    return etc


def bind_plan(
    writable: Sequence[Path] = (), readonly: Sequence[Path] = (), *,
    pythons: Sequence[Path] = (), command: Path | None = None,
) -> BindPlan:
    """The bind list of a ``bwrap`` run, worked out from this machine and the run's needs.

    ``pythons``: interpreters the run starts (their installations, :func:`python_binds`);
    ``command``: the executable itself, whose install prefix (``PREFIX/bin/tool``) is bound
    read-only when no other bind shows it (a uv inside a venv, say). ``cra doctor`` prints
    the plan for cra's own interpreter.
    """
    links, system = _system_binds()
    given = [*(Path(p) for p in writable), *(Path(p) for p in readonly)]
    extra: list[Path] = []
    for python in pythons:
        # What the caller bound already keeps its mode: an overlay being installed into
        # stays writable.
        extra += [b for b in python_binds(Path(python)) if not any(_is_under(b, g) for g in given)]
    plan_ro = [Path(p) for p in readonly] + extra
    if command is not None:
        seen = [*system, *plan_ro, *writable, *(Path(l) for _, l in links)]
        for path in {command.absolute(), command.resolve()}:
            if not any(_is_under(path, v) for v in seen):
                plan_ro.append(path.parent.parent if path.parent.name == "bin" else path.parent)
    return BindPlan(links, system, etc_dir(), tuple(_keep_order(plan_ro)),
                    tuple(_keep_order(writable)))


def _keep_order(paths: Iterable[Path]) -> list[Path]:
    return list(dict.fromkeys(Path(p) for p in paths))


class WeakSandbox(ConfigError):
    """Model-written code would run where the sandbox cannot hide the host."""


# --------------------------------------------------------------------------- cgroup


class _RunCgroup:
    """One pids cgroup per run: an exact process cap and a complete member list."""

    def __init__(self, parent: Path, processes: int):
        self.path = parent / f"cra-sbx-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.path.mkdir()
        try:
            (self.path / "pids.max").write_text(str(processes))
        except OSError:
            self.path.rmdir()
            raise
        self.procs = str(self.path / "cgroup.procs")

    @classmethod
    def adopt(cls, path: Path) -> _RunCgroup:
        group = cls.__new__(cls)
        group.path, group.procs = path, str(path / "cgroup.procs")
        return group

    def members(self) -> list[int]:
        try:
            return [int(p) for p in Path(self.procs).read_text().split()]
        except OSError:
            return []

    def kill_all(self) -> None:
        kill_file = self.path / "cgroup.kill"
        if kill_file.exists():
            try:
                kill_file.write_text("1")
            except OSError:
                pass
        # A bomb can fork between our read and our kill, but never past pids.max: a few
        # rounds empty the group.
        for _ in range(200):
            members = self.members()
            if not members:
                return
            for pid in members:
                _kill(pid)
            time.sleep(0.005)

    def remove(self) -> None:
        for _ in range(100):  # members killed but not yet reaped keep the group busy
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


# --------------------------------------------------------------------------- helpers


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _sweep_marked(token: bytes) -> None:
    """SIGKILL every process whose environment carries this run's marker, until none is left.

    Reaches setsid'd daemons that left our process group; used where no pid namespace or
    cgroup holds the tree.
    """
    needle = b"\0" + token + b"\0"
    me = os.getpid()
    for _ in range(50):
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if needle in b"\0" + data:
                found.append(int(entry.name))
        if not found:
            return
        for pid in found:
            _kill(pid)
        time.sleep(0.01)


def _load_prctl() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _rlimit_pairs(limits: Limits) -> list[tuple[int, int, int]]:
    """(resource, soft, hard), never above the hard limits we already have."""
    wanted = [
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        # SIGXCPU at the soft limit lets a program report it; SIGKILL follows 2 s later.
        (resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 2),
        (resource.RLIMIT_NPROC, limits.processes, limits.processes),
        (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    pairs = []
    for res, soft, hard in wanted:
        _, cur_hard = resource.getrlimit(res)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        pairs.append((res, soft, hard))
    return pairs


def _make_preexec(
    pairs: list[tuple[int, int, int]], cgroup_procs: str | None
) -> Callable[[], None]:
    """Runs in the child between fork and exec: join the cgroup, set limits, die with us.

    Kept to a few syscalls (no imports, no allocation-heavy work) because it runs in a
    forked copy of a possibly multi-threaded process. The parent-death signal fires when
    the *thread* that started the run exits, which is after the run: the call is blocking.
    """
    prctl = _PRCTL

    def preexec() -> None:
        if cgroup_procs is not None:
            fd = os.open(cgroup_procs, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        for res, soft, hard in pairs:
            resource.setrlimit(res, (soft, hard))
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


# pid 1 of the unshare level: keeps the command at pid 2 so it has ordinary signal
# semantics (pid 1 ignores signals it has no handler for), reaps orphans, passes the status.
_INIT_SHIM = """\
import os, signal, sys
pid = os.fork()
if pid == 0:
    for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(s, signal.SIG_DFL)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as e:
        os.write(2, ("cra sandbox: cannot run %s: %s\\n" % (sys.argv[1], e)).encode())
        os._exit(127)
while True:
    try:
        got, status = os.wait()
    except ChildProcessError:
        os._exit(1)
    if got == pid:
        break
os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
"""


def _bind_order(binds: Iterable[tuple[Path, bool]]) -> list[tuple[Path, bool]]:
    """Outer paths first, read-only after read-write at the same path: inner binds win."""
    unique = dict.fromkeys(binds)
    return sorted(unique, key=lambda b: (len(b[0].parts), b[1], str(b[0])))


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_visible(what: str, path: Path, binds: Sequence[Path]) -> None:
    """Under bwrap only the bind list exists; fail early, with the fix."""
    for candidate in {path, path.resolve()}:
        if not any(_is_under(candidate, b) for b in binds):
            raise SandboxError(
                f"{what} {candidate} is not visible inside the sandbox: only the bind list "
                "(system folders, interpreters, the run's paths) exists there",
                hint="pass its folder in writable= or readonly=",
            )


def _existing(paths: Iterable[Path | str], what: str) -> list[Path]:
    out = []
    for p in paths:
        path = Path(p).absolute()
        if not path.exists():
            raise SandboxError(f"{what} path {path} does not exist",
                               hint="create it before the run or leave it out")
        out.append(path.resolve())
    return out


def _find_executable(argv0: str, cwd: Path, env: dict[str, str]) -> Path | None:
    if "/" in argv0:
        path = Path(argv0) if os.path.isabs(argv0) else cwd / argv0
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    return Path(found) if found else None


def _default_env() -> dict[str, str]:
    """What a child gets when the caller gives no env: enough to find programs, no secrets."""
    return {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}


@functools.lru_cache(maxsize=256)  # callers may pass a fresh scratch folder per run
def _remove_stale_scratch(parent: Path) -> None:
    """Scratch folders of a cra process that died without cleaning up (a SIGKILLed
    harness): ``cra-sbx-<pid>-*`` of ours whose pid is gone. Once per folder and process."""
    for child in parent.glob("cra-sbx-*-*"):
        try:
            owner = int(child.name.split("-")[2])
            if child.stat().st_uid != os.geteuid() or Path(f"/proc/{owner}").exists():
                continue
        except (IndexError, ValueError, OSError):
            continue
        _rmtree(child)


def _rmtree(path: Path) -> None:
    def retry(func: Callable[..., object], p: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)


def _classify(returncode: int | None, timed_out: bool, stderr_tail: bytes) -> str | None:
    if timed_out:
        return "timeout"
    if returncode is None or returncode == 0:
        return None
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXFSZ:
            return "file size"
        if sig == signal.SIGXCPU:
            return "cpu"
        return f"signal {sig}"
    if b"File too large" in stderr_tail:  # Python ignores SIGXFSZ and raises EFBIG
        return "file size"
    if any(m in stderr_tail for m in (b"MemoryError", b"bad_alloc", b"Cannot allocate memory")):
        return "memory"
    return None


# --------------------------------------------------------------------------- running


class _Reader:
    """Reads the pipes with a selector, keeping at most ``cap`` bytes of stdout and stderr
    each and ``CHANNEL_BYTES`` of the channel."""

    def __init__(self, proc: subprocess.Popen[bytes], cap: int, channel: int | None = None):
        self.cap = cap
        self.sel = selectors.DefaultSelector()
        self.bufs: dict[int, bytearray] = {}
        self.caps: dict[int, int] = {}
        self.truncated = False
        self.channel = channel
        self.channel_truncated = False
        self.outputs = [s.fileno() for s in (proc.stdout, proc.stderr) if s is not None]
        for fd in [*self.outputs, *([channel] if channel is not None else [])]:
            self.bufs[fd] = bytearray()
            self.caps[fd] = CHANNEL_BYTES if fd == channel else cap
            self.sel.register(fd, selectors.EVENT_READ)

    @property
    def open(self) -> bool:
        return bool(self.sel.get_map())

    def pump(self, wait: float) -> None:
        for key, _ in self.sel.select(timeout=max(wait, 0.0)):
            fd = key.fd
            assert isinstance(fd, int)
            try:
                chunk = os.read(fd, _CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                self.sel.unregister(fd)
                continue
            buf = self.bufs[fd]
            room = self.caps[fd] - len(buf)
            if len(chunk) > room:
                if fd == self.channel:
                    self.channel_truncated = True
                else:
                    self.truncated = True
                chunk = chunk[: max(room, 0)]
            buf += chunk

    def close(self) -> None:
        for fd in list(self.sel.get_map()):
            self.sel.unregister(fd)
        self.sel.close()


def _exited(pid: int) -> bool:
    """Has the process exited? Does not reap it, so its pid (and process group) stay ours."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _follow(proc: subprocess.Popen[bytes], reader: _Reader, deadline: float,
            kill_tree: Callable[[], None]) -> bool:
    """Read output until the run is over; kill the tree at the deadline. True if timed out.

    Ends with the tree killed and the main process exited but not yet reaped.
    """
    timed_out = exited = False
    drain_until: float | None = None
    while reader.open:
        now = time.monotonic()
        if drain_until is None:
            if _exited(proc.pid):
                exited = True
                kill_tree()  # strays still holding the pipes (rlimits level)
                drain_until = now + _DRAIN_GRACE_S
            elif now >= deadline:
                timed_out = True
                kill_tree()
                drain_until = now + _DRAIN_GRACE_S
        elif now >= drain_until:
            break
        reader.pump(min(_POLL_S, (drain_until or deadline) - now))
    # The pipes are closed, but the command may live on (it closed its own stdout).
    while not exited and not timed_out:
        if _exited(proc.pid):
            exited = True
        elif time.monotonic() >= deadline:
            timed_out = True
        else:
            time.sleep(min(0.02, max(deadline - time.monotonic(), 0.0)))
    kill_tree()  # nothing of the run outlives it, daemons included
    return timed_out


def run_sandboxed(
    argv: Sequence[str],
    *,
    cwd: Path,
    writable: Sequence[Path],
    readonly: Sequence[Path] = (),
    env: dict[str, str] | None = None,
    limits: Limits | None = None,
    scratch: Path | None = None,
    level: str | None = None,
    protect_git: bool = True,
    pythons: Sequence[Path] = (),
    channel_env: str | None = None,
) -> SandboxResult:
    """Run ``argv`` in the sandbox and return how it ended; never raises for the child's sake.

    ``writable``: the only project paths the command may change (bwrap level). ``readonly``:
    paths bound read-only, also inside a writable path; with ``protect_git`` each writable
    path's own ``.git`` is added, so a run cannot plant hooks or rewrite refs. Under bwrap
    nothing else of the host exists but what :func:`bind_plan` adds (system folders, the
    installations of ``pythons`` and of ``argv[0]`` when it is a Python); a working
    directory or command outside all of that raises :class:`SandboxError` with the fix.
    ``env``: the child's whole environment (default: PATH and LANG only); HOME, TMPDIR, TMP,
    TEMP and the ``CRA_SANDBOX_ID`` marker are always set by the sandbox. ``scratch``: where
    the per-run HOME/TMPDIR folder is made (default: the system temp dir); it is removed
    afterwards. ``level`` forces a level (tests); an unavailable one raises SandboxError.
    ``channel_env``: give the child a pipe, its write end's number in that variable; the
    bytes written to it come back in ``SandboxResult.channel`` (capped at
    ``CHANNEL_BYTES``). A command that does not exist gives a result with
    ``reason == "not found"``.
    """
    limits = limits if limits is not None else Limits()
    if not argv:
        raise SandboxError("run_sandboxed needs a command, got an empty argv")
    chosen = level or isolation_level()
    if chosen not in LEVELS:
        raise SandboxError(f"unknown sandbox level {chosen!r}", hint=f"use one of {LEVELS}")
    if chosen not in available_levels():
        raise SandboxError(f"sandbox level {chosen!r} is not available on this machine",
                           hint=f"available: {', '.join(available_levels())}")
    cwd = Path(cwd).absolute()
    if not cwd.is_dir():
        raise SandboxError(f"sandbox working directory {cwd} does not exist")
    rw = _existing(writable, "writable")
    ro = _existing(readonly, "readonly")
    if protect_git:
        ro += [w / ".git" for w in rw if (w / ".git").exists()]

    run_id = uuid.uuid4().hex
    scratch_parent = Path(scratch) if scratch is not None else Path(tempfile.gettempdir())
    scratch_parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_scratch(scratch_parent.resolve())
    run_dir = Path(tempfile.mkdtemp(prefix=f"cra-sbx-{os.getpid()}-", dir=scratch_parent))
    run_dir = run_dir.resolve()
    try:
        home, tmp = run_dir / "home", run_dir / "tmp"
        home.mkdir()
        tmp.mkdir()
        child_env = dict(env) if env is not None else _default_env()
        child_env.update(HOME=str(home), TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp))
        child_env[MARKER_VAR] = run_id

        exe = _find_executable(argv[0], cwd, child_env)
        if exe is None:
            return SandboxResult(None, "", f"cra sandbox: command not found: {argv[0]}\n",
                                 False, False, 0.0, False, chosen, "not found")
        plan: BindPlan | None = None
        if chosen == "bwrap":
            interpreters = [*pythons, *([exe] if _looks_like_python(exe) else [])]
            plan = bind_plan(rw, ro, pythons=interpreters, command=exe)
            visible = [*plan.visible(), run_dir]
            _check_visible("working directory", cwd, visible)
            _check_visible("command", exe, visible)
        command, pidns = command_for(chosen, list(argv), cwd, plan, run_dir, limits)
        return _run(command, cwd, child_env, limits, chosen, pidns, run_id, channel_env)
    finally:
        _rmtree(run_dir)


def command_for(level: str, argv: list[str], cwd: Path, plan: BindPlan | None, run_dir: Path,
             limits: Limits) -> tuple[list[str], bool]:
    """The argv that runs ``argv`` at ``level``, and whether it gets its own pid namespace."""
    if level == "bwrap":
        flags = _bwrap_flags()
        assert flags is not None and plan is not None
        cmd = list(flags)
        for target, link in plan.symlinks:
            cmd += ["--symlink", target, str(link)]
        for path in plan.system:
            cmd += ["--ro-bind", str(path), str(path)]
        cmd += ["--ro-bind", str(plan.etc), "/etc", "--dev", "/dev", "--proc", "/proc"]
        # The sandbox's own /tmp is RAM: keep it to one file's worth. TMPDIR points at the
        # on-disk scratch folder anyway.
        if "--disable-userns" in flags:  # the probe checked --size along with it
            cmd += ["--size", str(limits.file_bytes)]
        cmd += ["--tmpfs", "/tmp", "--tmpfs", "/run", "--dir", "/var/tmp"]
        binds = [*((p, False) for p in plan.writable), *((p, True) for p in plan.readonly)]
        for path, is_ro in _bind_order(binds):
            cmd += ["--ro-bind" if is_ro else "--bind", str(path), str(path)]
        # The skeleton bwrap built the root from is read-only too: nothing is created there.
        cmd += ["--bind", str(run_dir), str(run_dir), "--remount-ro", "/",
                "--chdir", str(cwd), "--", *argv]
        return cmd, True
    if level == "unshare":
        found = _unshare_flags()
        assert found is not None
        prefix, pidns = found
        if pidns:
            return [*prefix, sys.executable, "-I", "-S", "-c", _INIT_SHIM, *argv], True
        return [*prefix, *argv], False
    return argv, False


def _run(command: list[str], cwd: Path, env: dict[str, str], limits: Limits, level: str,
         pidns: bool, run_id: str, channel_env: str | None = None) -> SandboxResult:
    parent = _cgroup_parent()
    try:
        cgroup = _RunCgroup(parent, limits.processes) if parent is not None else None
    except OSError as exc:
        raise SandboxError(f"cannot create a pids cgroup under {parent}: {exc}") from exc
    token = f"{MARKER_VAR}={run_id}".encode()
    start = time.monotonic()
    proc: subprocess.Popen[bytes] | None = None

    def kill_tree() -> None:
        assert proc is not None
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # our child is unreaped: the group is ours
        except OSError:
            pass
        if cgroup is not None:
            cgroup.kill_all()
        elif not pidns:
            _sweep_marked(token)

    channel_r = channel_w = None
    if channel_env is not None:
        channel_r, channel_w = os.pipe()
        env = {**env, channel_env: str(channel_w)}
    try:
        try:
            proc = subprocess.Popen(
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                pass_fds=(channel_w,) if channel_w is not None else (),
                # rlimits, the cgroup and the death signal must be set in the child between
                # fork and exec; the hook is a few syscalls (see _make_preexec).
                preexec_fn=_make_preexec(_rlimit_pairs(limits),  # noqa: PLW1509
                                         cgroup.procs if cgroup else None),
            )
        except OSError as exc:
            if level == "rlimits":  # the command itself failed to exec (a broken shebang)
                reason = "not found" if exc.errno == errno.ENOENT else "cannot execute"
                return SandboxResult(None, "", f"cra sandbox: {exc}\n", False, False, 0.0,
                                     False, level, reason)
            raise SandboxError(f"cannot start the sandbox ({level}) for {command[0]}: {exc}",
                               hint="run `cra doctor`") from exc
        except subprocess.SubprocessError as exc:  # our preexec_fn failed
            raise SandboxError(f"cannot start the sandbox ({level}) for {command[0]}: {exc}",
                               hint="run `cra doctor`") from exc
        if channel_w is not None:  # the child holds the write end now; EOF when it is gone
            os.close(channel_w)
            channel_w = None
        reader = _Reader(proc, limits.output_bytes, channel_r)
        try:
            timed_out = _follow(proc, reader, start + limits.timeout_s, kill_tree)
            returncode = proc.wait()
        finally:
            reader.close()
    finally:
        if proc is not None:
            if proc.returncode is None:  # interrupted (Ctrl-C): still leave nothing behind
                kill_tree()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if cgroup is not None:
            cgroup.kill_all()
            cgroup.remove()
        for fd in (channel_r, channel_w):
            if fd is not None:
                os.close(fd)
    duration = time.monotonic() - start

    if level in ("bwrap", "unshare") and pidns and 128 < returncode <= 128 + 64 and not timed_out:
        returncode = -(returncode - 128)  # the namespace's init reports a signal as 128+N
    stdout_b, stderr_b = (bytes(reader.bufs[fd]) for fd in reader.outputs)
    return SandboxResult(
        returncode=returncode,
        stdout=stdout_b.decode("utf-8", "replace"),
        stderr=stderr_b.decode("utf-8", "replace"),
        timed_out=timed_out,
        killed=returncode < 0,
        duration_s=duration,
        output_truncated=reader.truncated,
        isolation=level,
        reason=_classify(returncode, timed_out, stderr_b[-4096:]),
        channel=bytes(reader.bufs[channel_r]) if channel_r is not None else b"",
        channel_truncated=reader.channel_truncated,
    )
