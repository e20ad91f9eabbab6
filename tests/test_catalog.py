"""corpus/catalog.toml: the spec §7 corpus, checked entry by entry when loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError, NotFound
from appliance.packaging.catalog import CATEGORIES, by_category, find_entry, load_catalog

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "corpus" / "catalog.toml"

FAIL_FAST = [
    "attrs",
    "cattrs",
    "structlog",
    "svcs",
    "stamina",
    "strictyaml",
    "black",
    "libcst",
    "parso",
    "typeguard",
    "beartype",
    "hypothesis",
    "mypy",
    "rich",
]


def test_the_shipped_catalog_has_the_fourteen_fail_fast_repos() -> None:
    entries = load_catalog(CATALOG)
    fail_fast = by_category(entries)["fail-fast"]
    assert [e.name for e in fail_fast] == FAIL_FAST
    for e in fail_fast:
        assert e.tier == "full" and e.roles == ("P", "C"), e.name
        assert e.url.startswith("https://github.com/") and e.url.count("/") == 4, e.name
        assert e.domain


def test_the_shipped_catalog_covers_every_category_of_spec_section_7() -> None:
    entries = load_catalog(CATALOG)
    groups = by_category(entries)
    assert set(groups) == set(CATEGORIES)
    names = {e.name for e in entries}
    for must in (
        "peft",
        "trl",
        "unsloth",
        "llm.c",
        "nanogpt",
        "llama.cpp",
        "flash-attention",
        "vllm",
        "datasets",
        "tree-sitter",
        "pytest",
        "pydriller",
        "sqlite",
        "click",
        "bitsandbytes",
        "redis",
    ):
        assert must in names
    # Knowledge-only repos are the C/CUDA ones and those without usable CPU test suites.
    assert find_entry("llama.cpp", entries).tier == "knowledge"
    assert find_entry("bitsandbytes", entries).roles == ("K", "S")
    assert find_entry("vllm", entries).roles == ("P", "K", "S")
    assert len(names) == len(entries)


def test_find_entry_ignores_case_and_suggests_close_names() -> None:
    entries = load_catalog(CATALOG)
    assert find_entry("LibCST", entries).url == "https://github.com/Instagram/LibCST"
    with pytest.raises(NotFound, match="no repo named 'atrs'.*did you mean attrs"):
        find_entry("atrs", entries)


def test_default_path_prefers_the_catalog_in_cra_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRA_HOME", str(tmp_path))
    assert len(load_catalog()) == len(load_catalog(CATALOG))  # none in CRA_HOME: the checkout's
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "catalog.toml").write_text(
        'format_version = 1\n[[repo]]\nname = "mine"\nurl = "https://example.invalid/mine.git"\n'
        'domain = "x"\nroles = ["P"]\ntier = "full"\ncategories = ["cli"]\n'
    )
    assert [e.name for e in load_catalog()] == ["mine"]
    assert find_entry("mine").tier == "full"


GOOD = """\
format_version = 1

[[repo]]
name = "attrs"
url = "https://github.com/python-attrs/attrs"
domain = "classes"
roles = ["C", "P"]
tier = "full"
categories = ["fail-fast"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_a_good_entry_loads_with_roles_in_canonical_order(tmp_path: Path) -> None:
    [entry] = load_catalog(write(tmp_path, GOOD))
    assert entry.roles == ("P", "C")
    assert entry.test_cmd is None and entry.packaged


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (('roles = ["C", "P"]', 'roles = ["C", "Q"]'), "repo 'attrs': unknown role 'Q'"),
        (('tier = "full"', 'tier = "gold"'), "repo 'attrs': unknown tier 'gold'"),
        (
            ('categories = ["fail-fast"]', 'categories = ["misc"]'),
            "repo 'attrs': unknown category 'misc'",
        ),
        (('tier = "full"', 'tier = "full"\nstars = 5'), "repo 'attrs': unknown key 'stars'"),
        (('domain = "classes"\n', ""), "repo 'attrs': 'domain' is missing"),
        (('roles = ["C", "P"]', "roles = []"), "repo 'attrs': 'roles' must be a non-empty list"),
        (('roles = ["C", "P"]', 'roles = ["P", "P"]'), "repo 'attrs': 'roles' lists a value twice"),
        (
            ('url = "https://github.com/python-attrs/attrs"', 'url = "github.com/attrs"'),
            "is not a git URL",
        ),
        (('name = "attrs"', 'name = "../attrs"'), "'name' must be letters"),
        (("format_version = 1", "format_version = 7"), "format_version must be 1"),
        (('tier = "full"', 'tier = "full"\npython = "3"'), "python '3' is not X.Y"),
    ],
)
def test_bad_entries_are_config_errors_naming_the_entry(
    tmp_path: Path, edit: tuple[str, str], says: str
) -> None:
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    assert says in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2


def test_a_repo_listed_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="repo 'ATTRS' is listed twice"):
        load_catalog(
            write(tmp_path, GOOD + GOOD.split("\n", 2)[2].replace('"attrs"\n', '"ATTRS"\n', 1))
        )


def test_broken_toml_and_a_missing_catalog_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_catalog(write(tmp_path, "[[repo]\n"))
    with pytest.raises(ConfigError, match="the corpus catalog is missing"):
        load_catalog(tmp_path / "nope.toml")
