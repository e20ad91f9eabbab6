"""A stable checkout per (repo, worker slot), with the repo installed editable once.

A commit costs a checkout, not an install: ``var/worktrees/<repo>/<slot>`` is checked out
to each commit in turn (``git checkout -f`` + ``git clean -ffdx``) and the editable install
made there keeps pointing at it. The project is reinstalled only when its build
configuration changes (``build_digest``), or when a file the last install generated
(``_version.py`` from setuptools-scm, an ``.egg-info``) has gone missing.

Why the git directory lives outside the checkout (``var/worktrees/<repo>/.git-<slot>``) and
every harness git call names it explicitly: tests run with the checkout writable, so a
test could write ``.git/config`` (a ``filter.*.smudge`` command, say) and have the
harness's next ``git checkout`` run it outside the sandbox. The checkout's ``.git`` file
(which build back-ends such as hatch-vcs read for the version) is rewritten before every
use and is never trusted by the harness.

Overlays (see ``harness.envs``) live in ``var/worktrees/<repo>/.env-<slot>/<env key>/<build
digest>``: one per slot, era and build configuration.

Files a build generates are kept across ``git clean`` by exact path: the install records
what was untracked right after it ran.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.atomic import write_atomic
from appliance.config import Home
from appliance.errors import GitError
from harness.envs import EnvError, ensure_overlay, find_uv, installer_env, read_marker
from harness.git import git

BUILD_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
INSTALL_STATE = "cra-install.json"
INSTALL_TIMEOUT_S = 900.0

# pyproject ``[tool.*]`` tables and setup.cfg sections that configure linters and test
# runners, not the build: a change to them must not cost a reinstall. Anything not
# listed counts (an unknown tool may be a build plugin).
NON_BUILD_TOOLS = frozenset({
    "pytest", "ruff", "mypy", "coverage", "black", "isort", "pylint", "pyright", "codespell",
    "tox", "towncrier", "bumpversion", "interrogate", "check-manifest", "pydocstyle",
    "pycodestyle", "flake8", "docformatter", "commitizen", "semantic_release", "cibuildwheel",
    "pytest-watcher", "typos", "repo-review", "uv", "pixi", "nox", "yapf", "autopep8",
})
NON_BUILD_CFG = ("tool:pytest", "pytest", "flake8", "mypy", "coverage:", "isort", "pycodestyle",
                 "pydocstyle", "pylint", "tox", "codespell", "bdist_wheel", "aliases")


class PatchError(GitError):
    """A patch does not apply to the checkout it is meant for."""


@dataclass
class Worktree:
    """One slot's checkout of a repo; ``git_dir`` is outside it and never writable by tests."""

    repo: str
    slot: int
    path: Path
    git_dir: Path
    source: Path

    def git(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        # -C the checkout too: git apply and pathspecs resolve against the current folder.
        return git(
            self.path, f"--git-dir={self.git_dir}", f"--work-tree={self.path}", *args,
            check=check, input=input, timeout=600,
        )

    @property
    def git_store(self) -> Path:
        """The corpus repo's git directory, whose objects this slot borrows: what a sandboxed
        run needs of ``source`` for git to work, without the corpus clone's work tree."""
        dotgit = self.source / ".git"
        return dotgit if dotgit.is_dir() else self.source

    @property
    def root(self) -> Path:
        """``var/worktrees/<repo>``: the slot's checkout, git dir and overlays live here."""
        return self.path.parent

    @property
    def overlays(self) -> Path:
        """``var/worktrees/<repo>/.env-<slot>``: this slot's overlay environments."""
        return self.root / f".env-{self.slot}"

    def overlay_dir(self, env_key: str, digest: str) -> Path:
        return self.overlays / env_key / digest[:16]

    def reset_dotgit(self) -> None:
        """Rewrite the checkout's ``.git`` file (a test may have replaced it)."""
        dotgit = self.path / ".git"
        if dotgit.is_dir() and not dotgit.is_symlink():
            shutil.rmtree(dotgit)
        elif dotgit.exists() or dotgit.is_symlink():
            dotgit.unlink()
        dotgit.write_text(f"gitdir: {self.git_dir}\n", encoding="utf-8")


def ensure_worktree(home: Home, name: str, slot: int) -> Worktree:
    """The checkout for (repo, slot), cloned from ``corpus/<name>/repo`` the first time.

    ``--shared`` makes the clone borrow the corpus repo's objects: instant, and every
    commit the corpus knows is there without a fetch.
    """
    source = home.repo_dir(name)
    if not (source / ".git").exists() and not (source / "objects").exists():
        raise GitError(f"the repo package has no clone at {source}", hint=f"re-import '{name}'")
    root = home.worktrees / name
    wt = Worktree(repo=name, slot=slot, path=root / str(slot), git_dir=root / f".git-{slot}", source=source)
    if (wt.git_dir / "HEAD").exists() and wt.path.is_dir():
        wt.reset_dotgit()
        return wt
    for leftover in (wt.path, wt.git_dir):
        if leftover.exists():
            shutil.rmtree(leftover)
    root.mkdir(parents=True, exist_ok=True)
    git(None, "clone", "--quiet", "--shared", "--no-checkout", f"--separate-git-dir={wt.git_dir}",
        str(source), str(wt.path))
    wt.git("config", "core.hooksPath", os.devnull)
    head = wt.git("rev-parse", "HEAD").strip()
    wt.git("update-ref", "--no-deref", "HEAD", head)  # detach: resets then move no branch
    return wt


def checkout(wt: Worktree, sha: str, *, keep: list[str] | tuple[str, ...] = ()) -> None:
    """Make the checkout exactly ``sha``: tracked files reset, untracked ones removed,
    except the build-generated paths in ``keep``."""
    wt.reset_dotgit()
    # HEAD is detached (ensure_worktree), so this moves no branch; unlike checkout -f it
    # also drops paths a previous patch added to the index.
    wt.git("reset", "--quiet", "--hard", sha)
    clean(wt, keep=keep)


def clean(wt: Worktree, *, keep: list[str] | tuple[str, ...] = ()) -> None:
    excludes: list[str] = []
    for path in keep:
        excludes += ["-e", "/" + _escape_glob(path)]
    wt.git("clean", "-ffdxq", *excludes)


def _escape_glob(path: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\!#" else ch for ch in path)


def apply_patch(wt: Worktree, patch: str) -> None:
    """Apply a ``git diff --binary`` patch to the checkout and its index.

    ``--index`` so files the patch adds are tracked: the next ``checkout -f`` removes them
    and they can never be mistaken for files an install generated.
    """
    if not patch.strip():
        return
    data = patch.encode("utf-8", "surrogateescape")
    try:
        wt.git("apply", "--index", "--binary", "--whitespace=nowarn", "-", input=data)
    except GitError as exc:
        raise PatchError(f"patch does not apply: {exc.message}", path=wt.path) from exc


def untracked(wt: Worktree) -> list[str]:
    """Untracked paths, ignored ones included; an untracked folder is one ``dir/`` entry."""
    out = wt.git("ls-files", "-z", "--others", "--directory")
    return [p for p in out.split("\0") if p]


def _layout(worktree: Path) -> list[str]:
    """Top-level packages and modules, at the root and under ``src/``: what an editable
    install maps. A move to a src layout changes no config file (flit, hatch and
    setuptools discover packages) but leaves the old install pointing at the wrong folder."""
    names: list[str] = []
    for base in (worktree, worktree / "src"):
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            continue
        prefix = "" if base == worktree else "src/"
        for entry in entries:
            if entry.name.startswith(".") or entry.name in {"tests", "test", "docs", "build"}:
                continue
            if entry.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(entry.path, "__init__.py")):
                names.append(prefix + entry.name + "/")
            elif prefix and entry.is_dir(follow_symlinks=False):
                names.append(prefix + entry.name + "/")  # namespace packages under src/
            elif entry.name.endswith(".py") and entry.name not in {"setup.py", "conftest.py", "noxfile.py"}:
                names.append(prefix + entry.name)
    return names


def build_digest(worktree: Path) -> str:
    """A hash of what decides how the project installs, ignoring linter/test sections."""
    h = hashlib.sha256()
    h.update(json.dumps(_layout(worktree)).encode())
    for name in BUILD_FILES:
        path = worktree / name
        h.update(f"\0{name}\0".encode())
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if name == "pyproject.toml":
            try:
                data = tomllib.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError):
                h.update(raw)
                continue
            tools = data.get("tool")
            if isinstance(tools, dict):
                data["tool"] = {k: v for k, v in tools.items() if k not in NON_BUILD_TOOLS}
            h.update(json.dumps(data, sort_keys=True, default=str).encode())
        elif name == "setup.cfg":
            cfg = configparser.RawConfigParser(interpolation=None)
            try:
                cfg.read_string(raw.decode("utf-8", "replace"))
            except configparser.Error:
                h.update(raw)
                continue
            kept = {
                s: dict(cfg.items(s)) for s in cfg.sections()
                if not s.lower().startswith(NON_BUILD_CFG)
            }
            if kept:  # a setup.cfg holding only linter sections is as good as none
                h.update(json.dumps(kept, sort_keys=True).encode())
        else:
            h.update(raw)
    return h.hexdigest()


def build_requires(worktree: Path) -> list[str]:
    """``[build-system].requires``, or what pip assumes for a project without one."""
    path = worktree / "pyproject.toml"
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            return []
        system = data.get("build-system")
        if isinstance(system, dict) and isinstance(system.get("requires"), list):
            return [str(r) for r in system["requires"]]
    return ["setuptools>=40.8.0", "wheel"]


@dataclass
class InstallState:
    """What the last editable install into an overlay was made from."""

    digest: str
    keep: list[str]
    worktree: str
    sha: str

    @classmethod
    def load(cls, overlay: Path) -> InstallState | None:
        try:
            data = json.loads((overlay / INSTALL_STATE).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self, overlay: Path) -> None:
        write_atomic(overlay / INSTALL_STATE, json.dumps(self.__dict__))


CURRENT = "current.json"


def keep_list(wt: Worktree) -> list[str]:
    """Build-generated paths to spare from ``git clean``: what the install the checkout
    was last used with generated (an ``.egg-info``, a ``_version.py``)."""
    try:
        data = json.loads((wt.overlays / CURRENT).read_text(encoding="utf-8"))
        return [str(p) for p in data.get("keep", [])]
    except (OSError, ValueError, AttributeError):
        return []


def _set_current(wt: Worktree, overlay: Path, keep: list[str]) -> None:
    write_atomic(wt.overlays / CURRENT, json.dumps({"overlay": str(overlay), "keep": keep}))


def _requirements_met(python: Path, requires: list[str]) -> bool:
    """Whether the environment already has a build back-end satisfying ``requires``."""
    import subprocess

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        reqs = [Requirement(r) for r in requires]
    except InvalidRequirement:
        return False
    reqs = [r for r in reqs if r.marker is None or r.marker.evaluate()]
    if not reqs:
        return False
    script = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run(
        [str(python), "-c", script, *[r.name for r in reqs]],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if proc.returncode != 0:
        return False
    found = json.loads(proc.stdout)
    return all(
        found.get(r.name) is not None and r.specifier.contains(found[r.name], prereleases=True)
        for r in reqs
    )


def ensure_installed(
    home: Home,
    wt: Worktree,
    base_python: Path,
    env_key: str,
    wheelhouse: Path,
    *,
    sha: str,
    log: Path,
    level: str | None = None,
) -> Path:
    """The overlay Python with the checkout installed editable. Raises ``EnvError``.

    Each distinct build configuration (``build_digest``) of an era gets its own overlay,
    installed the first time it is seen: walking a history whose ``setup.cfg`` changes
    every few commits then costs one install per configuration, not one per change.

    The install runs in the sandbox: a build back-end executes the project's code
    (``setup.py``), which is the repo's at this commit and, later, a model's edit.
    """
    from harness.sandbox import Limits, run_sandboxed

    digest = build_digest(wt.path)
    overlay = wt.overlay_dir(env_key, digest)
    python = ensure_overlay(home, base_python, overlay, log=log)
    state = InstallState.load(overlay)
    if (
        state is not None
        and state.digest == digest
        and state.worktree == str(wt.path)
        and all((wt.path / p).exists() for p in state.keep)
    ):
        _set_current(wt, overlay, state.keep)
        return python
    before = set(untracked(wt))
    no_isolation = _requirements_met(python, build_requires(wt.path))
    # The installer that built the era env: a uv-built env has no pip to drive.
    base_marker = read_marker(base_python.parent.parent) or {}
    uv = find_uv() if base_marker.get("installer", "uv") == "uv" else None
    if base_marker.get("installer") == "uv" and uv is None:
        raise EnvError(f"{base_python.parent.parent} was built with uv, which is gone", log=log,
                       hint="reinstall uv (pip install 'cra[fast]') or delete the environment")
    common = ["--no-deps", "--no-index", "--find-links", str(wheelhouse)]
    if no_isolation:
        common.append("--no-build-isolation")
    if uv:
        # --no-cache: the sandbox's HOME/TMPDIR is the only writable scratch, made per run.
        argv = [uv, "pip", "install", "--offline", "--no-cache", "--python", str(python), *common,
                "-e", str(wt.path)]
    else:
        argv = [str(base_python), "-m", "pip", "--python", str(python), "install",
                "--no-cache-dir", *common, "-e", str(wt.path)]
    env = installer_env(home)
    env.pop("UV_CACHE_DIR", None)
    env["PATH"] = os.pathsep.join(
        [str(python.parent), str(base_python.parent), os.environ.get("PATH", "/usr/bin:/bin")]
    )
    scratch = home.tmp / "sandbox"
    result = run_sandboxed(
        argv, cwd=wt.path, writable=[wt.path, overlay],
        readonly=[wheelhouse, base_python.parent.parent, wt.git_dir, wt.git_store], env=env,
        limits=Limits(timeout_s=INSTALL_TIMEOUT_S, cpu_s=int(INSTALL_TIMEOUT_S) * 2),
        scratch=scratch, level=level, pythons=[python, base_python],
    )
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(argv)}   (at {sha[:12]}, sandbox: {result.isolation})\n")
        fh.write(result.stdout)
        fh.write(result.stderr)
        fh.write(f"[cra] exit {result.returncode}{' (timed out)' if result.timed_out else ''}\n")
    if result.returncode != 0:
        what = "timed out" if result.timed_out else f"failed (exit {result.returncode})"
        raise EnvError(f"editable install of {wt.repo} at {sha[:12]} {what}", log=log)
    generated = sorted(
        p for p in set(untracked(wt)) - before
        if "__pycache__" not in p and not p.endswith((".pyc", ".pyo"))
    )
    # A file the previous install generated and this one rewrote is not "new": keep it too.
    keep = sorted(set(generated) | (before & set(keep_list(wt))))
    InstallState(digest=digest, keep=keep, worktree=str(wt.path), sha=sha).save(overlay)
    _set_current(wt, overlay, keep)
    return python


def restore_test_files(
    wt: Worktree, sha: str, is_test: Callable[[str], bool], *, extra: dict[str, str] | None = None
) -> list[str]:
    """Put every test-side file back to what it is at ``sha`` (plus ``extra`` files).

    Whatever a patch did to tests, ``conftest.py`` or pytest's config (changed, deleted or
    added them) is undone here, so only the commit's own tests judge it. Returns the
    paths it had to restore or remove.
    """
    extra = extra or {}
    changed = [p for p in wt.git("diff", "--name-only", "--no-renames", "-z", sha).split("\0") if p]
    others = [p for p in wt.git("ls-files", "-z", "--others").split("\0") if p]
    touched = sorted({p for p in changed + others if is_test(p) and p not in extra})
    at_sha: set[str] = set()
    if touched:
        listed = wt.git("ls-tree", "-r", "-z", "--name-only", sha, "--", *(f":(literal){p}" for p in touched))
        at_sha = {p for p in listed.split("\0") if p}
    restore = [p for p in touched if p in at_sha]
    for path in touched:
        if path in at_sha:
            continue
        target = wt.path / path
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
    if restore:
        wt.git("checkout", sha, "--pathspec-from-file=-", "--pathspec-file-nul",
               input=b"\0".join(f":(literal){p}".encode() for p in restore))
    for path, text in extra.items():
        target = wt.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_text(text, encoding="utf-8")
    return touched

