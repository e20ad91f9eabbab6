"""Where cra keeps its state, and the settings in ``CRA_HOME/cra.toml``.

Every setting is a dataclass field with a default and a ``help`` text, so ``cra doctor``
and the docs can print them, and a typo in ``cra.toml`` is an error naming the key rather
than a silently ignored line.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import BadInput, ConfigError

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


PROVIDERS = ("llama_cpp", "openai_compat", "scripted")
STRUCTURED_MODES = ("auto", "json_schema", "json_object_schema", "guided_json", "structured_outputs")


@dataclass
class LLMConfig:
    """The ``[llm]`` table of ``cra.toml``: which model answers, and how patiently."""

    provider: str = field(
        default="",
        metadata=_help("llama_cpp (in process, a GGUF file), openai_compat (a server at "
                       "'endpoint'), or empty: no model, the harness runs the retrieval planner."),
    )
    model: str = field(
        default="",
        metadata=_help("llama_cpp: path of a local .gguf file (never downloaded). "
                       "openai_compat: the model name the server serves."),
    )
    endpoint: str = field(
        default="",
        metadata=_help("openai_compat: base URL of the server, e.g. http://127.0.0.1:8000/v1. "
                       "No default: which host (loopback, LAN) is the user's choice."),
    )
    api_key_env: str = field(
        default="",
        metadata=_help("openai_compat: name of an environment variable holding a bearer token "
                       "(the token itself never goes into cra.toml or the DB)."),
    )
    n_ctx: int = field(default=4096, metadata=_help("llama_cpp: context window in tokens."))
    n_threads: int = field(default=0, metadata=_help("llama_cpp: CPU threads; 0 lets llama.cpp choose."))
    timeout_s: float = field(
        default=300.0,
        metadata=_help("Seconds one request may take (openai_compat: per socket read) "
                       "before it is a recorded timeout; 0: no limit."),
    )
    max_retries: int = field(
        default=2, metadata=_help("Retries of a request after a timeout, a server error or a refused connection."),
    )
    retry_backoff_s: float = field(
        default=1.0, metadata=_help("Wait before the first retry; doubled for each further one (at most 30 s)."),
    )
    structured_output: str = field(
        default="auto",
        metadata=_help("openai_compat: how a JSON schema is sent. auto: OpenAI's "
                       "response_format json_schema, falling back to llama-cpp-python's "
                       "json_object+schema when the server refuses it; or one of "
                       "json_schema, json_object_schema, guided_json (vLLM < 0.11), "
                       "structured_outputs (vLLM >= 0.11)."),
    )
    check_models: bool = field(
        default=True,
        metadata=_help("openai_compat: check that the model (or adapter) name is listed by "
                       "the server's /v1/models before using it (llama-cpp-python's server "
                       "silently answers with its default model for an unknown name)."),
    )

    def __post_init__(self) -> None:
        where = "[llm]"
        if self.provider and self.provider not in PROVIDERS:
            raise ConfigError(f"{where} provider {self.provider!r} is unknown",
                              hint=f"use one of {', '.join(PROVIDERS[:2])}, or leave it empty", path=CONFIG_NAME)
        if self.structured_output not in STRUCTURED_MODES:
            raise ConfigError(f"{where} structured_output {self.structured_output!r} is unknown",
                              hint=f"use one of {', '.join(STRUCTURED_MODES)}", path=CONFIG_NAME)
        for name in ("timeout_s", "retry_backoff_s"):
            if not isinstance(getattr(self, name), int | float) or getattr(self, name) < 0:
                raise ConfigError(f"{where} {name} must be a number >= 0", path=CONFIG_NAME)
        for name in ("max_retries", "n_ctx", "n_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where} {name} must be an integer >= 0", path=CONFIG_NAME)
        if self.provider == "openai_compat":
            if not self.endpoint:
                raise ConfigError(f"{where} provider openai_compat needs an endpoint",
                                  hint="e.g. endpoint = \"http://127.0.0.1:8000/v1\"", path=CONFIG_NAME)
            check_endpoint(self.endpoint)
        if self.provider == "llama_cpp" and not self.model:
            raise ConfigError(f"{where} provider llama_cpp needs model = the path of a .gguf file",
                              path=CONFIG_NAME)

    @property
    def configured(self) -> bool:
        """False: no model; the harness plans from retrieval alone."""
        return bool(self.provider)

    def with_flags(self, *, model: str | None = None, endpoint: str | None = None) -> LLMConfig:
        """The CLI's ``--model PATH`` (llama_cpp) or ``--endpoint URL`` (openai_compat) on top.

        With ``--endpoint`` the served model name stays ``model`` from cra.toml (or is
        given with ``--model`` as a name).
        """
        if model and endpoint:
            return replace(self, provider="openai_compat", endpoint=endpoint, model=model)
        if endpoint:
            return replace(self, provider="openai_compat", endpoint=endpoint)
        if model:
            return replace(self, provider="llama_cpp", model=model)
        return self


def check_endpoint(url: str) -> str:
    """An ``http(s)://host[:port][/path]`` URL, or ``BadInput`` naming it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"endpoint {url!r} is not an http(s) URL",
                       hint="give the server's base URL, e.g. http://127.0.0.1:8000/v1")
    return url


@dataclass
class Settings:
    """All of ``cra.toml``."""

    mining: MiningConfig = field(default_factory=MiningConfig)
    packaging: PackagingConfig = field(default_factory=PackagingConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)


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
