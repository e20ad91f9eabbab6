"""Where cra keeps its state, and the settings in ``CRA_HOME/cra.toml``.

Every setting is a dataclass field with a default and a ``help`` text, so ``cra doctor``
and the docs can print them, and a typo in ``cra.toml`` is an error naming the key rather
than a silently ignored line.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError

CONFIG_NAME = "cra.toml"


@dataclass(frozen=True)
class Home:
    """The folders of one ``CRA_HOME``; every path cra writes is derived from here."""

    root: Path

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None) -> Home:
        chosen = root if root is not None else os.environ.get("CRA_HOME") or os.getcwd()
        return cls(Path(chosen).expanduser().resolve())

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def db_path(self) -> Path:
        return self.var / "cra.db"

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def envs(self) -> Path:
        return self.var / "envs"

    @property
    def worktrees(self) -> Path:
        return self.var / "worktrees"

    @property
    def logs(self) -> Path:
        return self.var / "logs"

    @property
    def tmp(self) -> Path:
        return self.var / "tmp"

    def repo_dir(self, name: str) -> Path:
        return self.corpus / name / "repo"

    def wheelhouse(self, name: str) -> Path:
        return self.packages / name

    def locks_dir(self, name: str) -> Path:
        return self.packages / name / "locks"

    def manifest_path(self, name: str) -> Path:
        return self.manifests / f"{name}.json"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class MiningConfig:
    """Thresholds of the commit filter (``harness.filters``)."""

    min_message_chars: int = field(
        default=15, metadata=_help("Shortest commit title that can describe a task.")
    )
    max_message_chars: int = field(
        default=2000, metadata=_help("Longest commit message kept (longer ones are changelogs).")
    )
    min_files: int = field(default=2, metadata=_help("Fewest files a kept commit changes (code + test)."))
    max_files: int = field(default=12, metadata=_help("Most files a kept commit changes."))
    min_lines: int = field(default=4, metadata=_help("Fewest added+deleted lines of a kept commit."))
    max_lines: int = field(default=600, metadata=_help("Most added+deleted lines of a kept commit."))
    max_source_files: int = field(
        default=6, metadata=_help("Most non-test .py files a kept commit changes.")
    )

    def __post_init__(self) -> None:
        for lo, hi in (("min_files", "max_files"), ("min_lines", "max_lines"),
                       ("min_message_chars", "max_message_chars")):
            if getattr(self, lo) > getattr(self, hi):
                raise ConfigError(f"[mining] {lo} is larger than {hi}", path=CONFIG_NAME)


@dataclass
class PackagingConfig:
    """How ``cra corpus add`` locks and downloads dependencies (connected side only)."""

    python: str = field(
        default="", metadata=_help("Python X.Y of the air-gapped box; empty: the one running cra.")
    )
    find_links: list[str] = field(
        default_factory=list,
        metadata=_help("Local wheel folders to use besides (or, with no_index, instead of) PyPI."),
    )
    no_index: bool = field(default=False, metadata=_help("Never ask a package index; use find_links only."))
    use_uv: bool = field(default=True, metadata=_help("Use uv for installs when it is installed."))


@dataclass
class Settings:
    """All of ``cra.toml``."""

    mining: MiningConfig = field(default_factory=MiningConfig)
    packaging: PackagingConfig = field(default_factory=PackagingConfig)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"unknown setting '{where}{key}'",
                hint=f"known: {', '.join(sorted(known))}",
                path=CONFIG_NAME,
            )
        f = known[key]
        if isinstance(f.default_factory, type) and is_dataclass(f.default_factory):  # type: ignore[arg-type]
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table", path=CONFIG_NAME)
            kwargs[key] = _build(f.default_factory, value, f"{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def load_settings(home: Home) -> Settings:
    """Read ``CRA_HOME/cra.toml``; a missing file means all defaults."""
    path = home.config_path
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from exc
    try:
        return _build(Settings, data, "")
    except TypeError as exc:
        raise ConfigError(str(exc), path=path) from exc


def describe_settings(settings: Settings) -> list[tuple[str, Any, str]]:
    """(key, value, help) for every setting, for ``cra doctor`` and the docs."""
    rows: list[tuple[str, Any, str]] = []
    for section in fields(settings):
        obj = getattr(settings, section.name)
        for f in fields(obj):
            rows.append((f"{section.name}.{f.name}", getattr(obj, f.name), f.metadata.get("help", "")))
    return rows
