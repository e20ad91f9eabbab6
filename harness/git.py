"""Running git safely: hooks off, no prompts, no pager, errors as ``GitError``.

Repos come from strangers (and, later, model output edits them), so a hook in
``.git/hooks`` must never run: every call sets ``core.hooksPath`` to an empty place.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from appliance.errors import GitError

SAFE_CONFIG = (
    "-c", f"core.hooksPath={os.devnull}",
    "-c", "core.fsmonitor=false",
    "-c", "protocol.file.allow=always",
    "-c", "advice.detachedHead=false",
    "-c", "core.quotepath=off",
    "-c", "gc.auto=0",
)


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME=env.get("CRA_GIT_NAME", "cra"),
        GIT_AUTHOR_EMAIL="cra@localhost",
        GIT_COMMITTER_NAME="cra",
        GIT_COMMITTER_EMAIL="cra@localhost",
        LC_ALL="C",
    )
    return env


def git(
    repo: Path | str | None,
    *args: str,
    check: bool = True,
    input: bytes | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``git -C repo args`` and return stdout as text (utf-8, undecodable bytes replaced).

    ``env`` adds variables (e.g. ``GIT_INDEX_FILE``) to the safe environment."""
    return git_bytes(repo, *args, check=check, input=input, timeout=timeout, env=env).decode("utf-8", "replace")


def git_bytes(
    repo: Path | str | None,
    *args: str,
    check: bool = True,
    input: bytes | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> bytes:
    cmd: list[str] = ["git", *SAFE_CONFIG]
    if repo is not None:
        cmd += ["-C", str(repo)]
    cmd += list(args)
    try:
        proc = subprocess.run(
            cmd, input=input, capture_output=True, env={**git_env(), **(env or {})}, timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed", hint="install git (apt-get install git)") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {' '.join(args[:2])} timed out after {timeout}s", path=repo) from exc
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = err[-1] if err else f"exit {proc.returncode}"
        raise GitError(f"git {' '.join(_short(args))} failed: {last}", path=repo)
    return proc.stdout


def _short(args: Sequence[str]) -> list[str]:
    return [a if len(a) < 60 else a[:57] + "..." for a in args[:4]]


def show_file(repo: Path | str, sha: str, path: str) -> str | None:
    """A file's text at a commit, or None when it does not exist there."""
    try:
        return git(repo, "show", f"{sha}:{path}")
    except GitError:
        return None


def head_sha(repo: Path | str) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def default_branch(repo: Path | str) -> str:
    """The branch HEAD points at (a clone's default branch)."""
    out = git(repo, "symbolic-ref", "--short", "-q", "HEAD", check=False).strip()
    return out or "HEAD"


def cat_files(repo_dir: Path, names: Iterable[str]) -> dict[str, tuple[str, bytes]]:
    """``{"<rev>:<path>": (blob id, content)}`` from one ``git cat-file --batch``.

    A name that does not exist (the file is new, or deleted) is simply absent.
    """
    wanted = [n for n in dict.fromkeys(names) if "\n" not in n]
    if not wanted:
        return {}
    out = git_bytes(repo_dir, "cat-file", "--batch", input="\n".join(wanted).encode() + b"\n")
    found: dict[str, tuple[str, bytes]] = {}
    pos = 0
    for name in wanted:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            found[name] = (header[0].decode(), out[pos : pos + size])
            pos += size + 1
        elif len(header) == 3:  # a tree or a submodule commit: skip its body
            pos += int(header[2]) + 1
    return found
