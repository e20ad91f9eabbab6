"""Build real git repositories in tests, one readable scenario at a time.

    repo = RepoBuilder(tmp_path / "lib")
    repo.write({"lib/core.py": "...", "tests/test_core.py": "..."})
    repo.commit("Add parse() for ISO dates")

Commits get fixed, increasing dates so tests are deterministic.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BASE_TS = 1_600_000_000  # 2020-09-13


class RepoBuilder:
    def __init__(self, path: Path, *, branch: str = "main"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.tick = 0
        self.git("init", "-q", "-b", branch)

    def _env(self) -> dict[str, str]:
        ts = f"{BASE_TS + self.tick * 3600} +0000"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_AUTHOR_NAME="Ada Dev", GIT_AUTHOR_EMAIL="ada@example.com",
            GIT_COMMITTER_NAME="Ada Dev", GIT_COMMITTER_EMAIL="ada@example.com",
            GIT_AUTHOR_DATE=ts, GIT_COMMITTER_DATE=ts, GIT_CONFIG_NOSYSTEM="1",
            HOME=str(self.path.parent),
        )
        return env

    def git(self, *args: str) -> str:
        out = subprocess.run(
            ["git", "-c", "commit.gpgsign=false", "-C", str(self.path), *args],
            capture_output=True, text=True, env=self._env(), check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {out.stderr}")
        return out.stdout

    def write(self, files: dict[str, str]) -> RepoBuilder:
        for rel, text in files.items():
            p = self.path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return self

    def write_bytes(self, files: dict[str, bytes]) -> RepoBuilder:
        for rel, data in files.items():
            p = self.path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return self

    def delete(self, *paths: str) -> RepoBuilder:
        for rel in paths:
            (self.path / rel).unlink()
        return self

    def commit(self, message: str, files: dict[str, str] | None = None, *, author: str | None = None) -> str:
        """``author`` is "Name <email>" (a bot, say); the default is Ada Dev."""
        if files:
            self.write(files)
        self.tick += 1
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, *(["--author", author] if author else []))
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def branch(self, name: str, start: str | None = None) -> None:
        self.git("checkout", "-q", "-b", name, *([start] if start else []))

    def checkout(self, ref: str) -> None:
        self.git("checkout", "-q", ref)

    def merge(self, branch: str, message: str) -> str:
        """A no-fast-forward merge, as GitHub's merge button makes."""
        self.tick += 1
        self.git("merge", "-q", "--no-ff", "-m", message, branch)
        return self.head()
