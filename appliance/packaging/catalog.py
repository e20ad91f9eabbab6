"""``corpus/catalog.toml``: the repos the appliance knows (spec §7), checked when loaded.

A catalog entry says where a repo lives and what it is for: its roles (P planning
training, C code style, K knowledge base, S self-referential) and its tier (``full``: a
Python repo packaged with wheels and a manifest for the harness; ``knowledge``: the clone
only, indexed for retrieval). ``cra corpus add --from-catalog NAME`` takes its URL and
hints from here. A typo (an unknown role, tier or key) is an error naming the entry,
never a silently different corpus.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError, NotFound

CATALOG_NAME = "catalog.toml"
FORMAT_VERSION = 1
ROLES = ("P", "C", "K", "S")
TIERS = ("full", "knowledge")
CATEGORIES = {
    "fail-fast": "Fail-fast Python repos",
    "lora": "LoRA / fine-tuning",
    "from-scratch": "From-scratch training",
    "cuda": "CUDA / GPU programming",
    "inference": "Inference servers",
    "data": "Data pipelines",
    "ast": "AST / parsers",
    "testing": "Testing / evaluation",
    "vcs": "Git / VCS",
    "db": "Databases",
    "cli": "CLI / TUI",
    "quantization": "Quantization / optimization",
    "c-systems": "C reference / systems",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PYTHON = re.compile(r"^3\.[0-9]{1,2}$")


@dataclass(frozen=True)
class CatalogEntry:
    """One repo of the corpus."""

    name: str  # also the repo package name (corpus/<name>/repo)
    url: str
    domain: str  # what the code is about, in a few words
    roles: tuple[str, ...]  # subset of ROLES, in that order
    tier: str  # one of TIERS
    categories: tuple[str, ...] = ()  # keys of CATEGORIES (§7 lists some repos twice)
    test_cmd: str | None = None  # hint for `cra corpus add --test-cmd`
    python: str | None = None  # Python X.Y the repo's recent history needs, when known
    notes: str = ""

    @property
    def packaged(self) -> bool:
        """Full-tier repos get wheels and a manifest; knowledge-tier ones only the clone."""
        return self.tier == "full"


_FIELDS = {f.name for f in fields(CatalogEntry)}
_REQUIRED = ("name", "url", "domain", "roles", "tier", "categories")


def default_catalog_path() -> Path:
    """``$CRA_HOME/corpus/catalog.toml`` if there is one, else the one shipped with cra
    (``appliance/data/catalog.toml``: a link to ``corpus/catalog.toml`` in a checkout, the
    file itself in an installed wheel)."""
    home = Path(os.environ.get("CRA_HOME") or os.getcwd()) / "corpus" / CATALOG_NAME
    if home.is_file():
        return home
    return Path(str(resources.files("appliance").joinpath("data", CATALOG_NAME)))


def _entry(raw: Any, index: int, path: Path) -> CatalogEntry:
    label = f"[[repo]] #{index + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{label} is not a table", path=path)
    if isinstance(raw.get("name"), str):
        label = f"repo '{raw['name']}'"

    def bad(msg: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{label}: {msg}", path=path, hint=hint)

    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise bad(f"unknown key '{unknown[0]}'", hint=f"known: {', '.join(sorted(_FIELDS))}")
    for key in _REQUIRED:
        if key not in raw:
            raise bad(f"'{key}' is missing")
    for key in ("name", "url", "domain", "tier"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise bad(f"'{key}' must be a non-empty string")
    for key in ("test_cmd", "python", "notes"):
        if key in raw and not isinstance(raw[key], str):
            raise bad(f"'{key}' must be a string")
    if not _NAME.match(raw["name"]):
        raise bad("'name' must be letters, digits, '.', '_' or '-' (it becomes a folder name)")
    if not re.match(r"^(https://|ssh://|git@|file://)", raw["url"]):
        raise bad(f"url {raw['url']!r} is not a git URL", hint="use https://github.com/OWNER/REPO")
    for key, known in (("roles", ROLES), ("categories", tuple(CATEGORIES))):
        values = raw[key]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) for v in values)
        ):
            raise bad(f"'{key}' must be a non-empty list of strings")
        for v in values:
            if v not in known:
                raise bad(
                    f"unknown {key[:-1] if key == 'roles' else 'category'} '{v}'",
                    hint=f"known: {', '.join(known)}",
                )
        if len(set(values)) != len(values):
            raise bad(f"'{key}' lists a value twice")
    if raw["tier"] not in TIERS:
        raise bad(f"unknown tier '{raw['tier']}'", hint=f"known: {', '.join(TIERS)}")
    if "python" in raw and not _PYTHON.match(raw["python"]):
        raise bad(f"python {raw['python']!r} is not X.Y", hint='e.g. python = "3.11"')
    return CatalogEntry(
        name=raw["name"],
        url=raw["url"],
        domain=raw["domain"].strip(),
        roles=tuple(r for r in ROLES if r in raw["roles"]),
        tier=raw["tier"],
        categories=tuple(raw["categories"]),
        test_cmd=raw.get("test_cmd") or None,
        python=raw.get("python") or None,
        notes=raw.get("notes", ""),
    )


def load_catalog(path: Path | str | None = None) -> list[CatalogEntry]:
    """Read and check a catalog; entries come back in file order."""
    path = Path(path) if path is not None else default_catalog_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            "the corpus catalog is missing",
            path=path,
            hint="reinstall cra (its wheel ships the catalog) or put a catalog.toml in $CRA_HOME/corpus/",
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from exc
    extra = sorted(set(data) - {"format_version", "repo"})
    if extra:
        raise ConfigError(
            f"unknown top-level key '{extra[0]}'", path=path, hint="known: format_version, repo"
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"format_version must be {FORMAT_VERSION}", path=path)
    raw_entries = data.get("repo", [])
    if not isinstance(raw_entries, list):
        raise ConfigError("'repo' must be an array of tables ([[repo]])", path=path)
    entries: list[CatalogEntry] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_entries):
        entry = _entry(raw, i, path)
        if entry.name.lower() in seen:
            raise ConfigError(f"repo '{entry.name}' is listed twice", path=path)
        seen.add(entry.name.lower())
        entries.append(entry)
    return entries


def find_entry(
    name: str, entries: list[CatalogEntry] | None = None, *, path: Path | str | None = None
) -> CatalogEntry:
    """The entry called ``name`` (case-insensitive); NotFound suggests close names."""
    entries = entries if entries is not None else load_catalog(path)
    for entry in entries:
        if entry.name.lower() == name.lower():
            return entry
    names = [e.name for e in entries]
    close = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "'cra corpus catalog' lists them"
    raise NotFound(f"no repo named '{name}' in the corpus catalog", hint=hint)


def by_category(entries: list[CatalogEntry]) -> dict[str, list[CatalogEntry]]:
    """Entries grouped by category, in the order of spec §7 (an entry may sit in two)."""
    groups: dict[str, list[CatalogEntry]] = {key: [] for key in CATEGORIES}
    for entry in entries:
        for cat in entry.categories:
            groups[cat].append(entry)
    return {k: v for k, v in groups.items() if v}


__all__ = [
    "CATEGORIES",
    "ROLES",
    "TIERS",
    "CatalogEntry",
    "by_category",
    "default_catalog_path",
    "find_entry",
    "load_catalog",
]
