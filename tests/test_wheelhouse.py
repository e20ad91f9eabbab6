"""Locks and wheelhouses with real pip-compile, pip download and offline pip installs.

Tests marked ``network`` talk to PyPI (the connected side's job). They share one pip
cache kept in pytest's cache folder, so a rerun mostly downloads nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.errors import ConfigError, Failed, LockError, MissingWheel
from appliance.packaging.wheelhouse import (
    _add_built_hashes,
    _lock_failure,
    fill_wheelhouse,
    lock_era,
    read_lock,
    verify_wheelhouse,
    wheel_inventory,
)
from appliance.records import CommitRecord, EraRecord
from harness.deps import assign_eras
from harness.envs import find_uv

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="session")
def pip_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("cra-pip-cache"))
    return tmp_path_factory.mktemp("cra-pip-cache")


def era_of(reqs: list[str], build: list[str] | None = None) -> EraRecord:
    return EraRecord(
        key="e" * 64, requirements=reqs, build_requires=build or [], first_commit="0" * 40
    )


HATCH_PROJECT = textwrap.dedent(
    """
    [build-system]
    requires = ["hatchling"]
    build-backend = "hatchling.build"

    [project]
    name = "tinyproj"
    version = "0.1"
    # docopt has only an sdist on PyPI: cra must build its wheel on the connected side
    dependencies = ["iniconfig", "docopt"]
    """
)


@dataclass
class Filled:
    repo: Path
    era: EraRecord
    lock: Path
    wheelhouse: Path
    built: list[str]
    log: Path


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, pip_cache: Path) -> Filled:
    """A hatchling project's only era, locked and its wheelhouse filled (once per module)."""
    base = tmp_path_factory.mktemp("filled")
    repo = RepoBuilder(base / "tinyproj")
    sha = repo.commit(
        "Add tinyproj",
        {
            "pyproject.toml": HATCH_PROJECT,
            "src/tinyproj/__init__.py": "def answer():\n    return 42\n",
            "tests/test_answer.py": "from tinyproj import answer\n\n"
            "def test_answer():\n    assert answer() == 42\n",
        },
    )
    (era,) = assign_eras(repo.path, [CommitRecord(sha, None, "", 0, "t", "t")])
    lock = base / "packages" / "locks" / f"{era.key[:16]}.txt"
    wheelhouse = base / "packages" / "wheels"
    log = base / "pip.log"
    lock_era(era, PY, lock, log=log, cache_dir=pip_cache)
    report = fill_wheelhouse(lock, wheelhouse, PY, log=log, cache_dir=pip_cache)
    return Filled(repo.path, era, lock, wheelhouse, report.built, log)


def sub_lock(filled: Filled, tmp_path: Path, *names: str) -> Path:
    """A lock with only some pins of the fixture's lock: a quicker offline install."""
    lines = filled.lock.read_text().splitlines()
    keep = [e for e in read_lock(filled.lock) if e.name in names]
    out = tmp_path / "sub-lock.txt"
    out.write_text("".join("\n".join(lines[e.first_line : e.last_line + 1]) + "\n" for e in keep))
    return out


def copy_wheelhouse(filled: Filled, tmp_path: Path) -> Path:
    target = tmp_path / "wheels"
    shutil.copytree(filled.wheelhouse, target)
    return target


@pytest.mark.network
def test_lock_fill_verify_and_install_the_project_editable_offline(filled: Filled) -> None:
    pins = {e.name: e for e in read_lock(filled.lock)}
    # the back-end and what its editable hook asks for are locked with the test deps
    assert {"hatchling", "editables", "iniconfig", "docopt", "pytest"} <= set(pins)
    assert all(e.hashes for e in pins.values())
    text = filled.lock.read_text()
    assert text.startswith(f"# cra lock for dependency era {filled.era.key}, Python {PY}\n")
    assert "--index-url" not in text and "--find-links" not in text and "/tmp" not in text

    # docopt was built from its sdist; its wheel's hash joined the index's sdist hash
    (docopt_wheel,) = [w for w in filled.built if w.startswith("docopt-")]
    digest = hashlib.sha256((filled.wheelhouse / docopt_wheel).read_bytes()).hexdigest()
    assert f"sha256:{digest}" in pins["docopt"].hashes and len(pins["docopt"].hashes) >= 2
    assert f"# cra: {docopt_wheel} built from the sdist of docopt==0.6.2: sha256:{digest}" in text
    assert not list(filled.wheelhouse.glob("*.tar.gz"))

    # the proof: everything installs with no index, hashes checked, and the project
    # installs editable with its build back-end taken from the wheelhouse
    verify_wheelhouse(filled.lock, filled.wheelhouse, editable=filled.repo, log=filled.log)

    inventory = wheel_inventory(filled.wheelhouse)
    assert [i["file"] for i in inventory] == sorted(p.name for p in filled.wheelhouse.glob("*.whl"))
    for item in inventory:
        assert (
            item["sha256"]
            == hashlib.sha256((filled.wheelhouse / item["file"]).read_bytes()).hexdigest()
        )


@pytest.mark.network
def test_refill_skips_what_is_there_and_leaves_the_lock_alone(
    filled: Filled, tmp_path: Path
) -> None:
    before = filled.lock.read_bytes()
    # no cache and a bogus index in the environment: a skipped fill never runs pip at all
    report = fill_wheelhouse(filled.lock, filled.wheelhouse, PY, cache_dir=tmp_path / "empty")
    assert report.downloaded == [] and report.built == []
    assert len(report.present) == len(read_lock(filled.lock))
    assert filled.lock.read_bytes() == before


@pytest.mark.network
def test_a_removed_wheel_is_named_and_a_refill_fetches_only_it(
    filled: Filled, tmp_path: Path, pip_cache: Path
) -> None:
    wheels = copy_wheelhouse(filled, tmp_path)
    (victim,) = wheels.glob("iniconfig-*.whl")
    victim.unlink()
    with pytest.raises(MissingWheel, match=r"iniconfig==") as info:
        verify_wheelhouse(filled.lock, wheels)
    assert "pluggy" not in str(info.value)

    lock = tmp_path / "lock.txt"
    shutil.copy(filled.lock, lock)
    report = fill_wheelhouse(lock, wheels, PY, cache_dir=pip_cache)
    assert report.downloaded == [victim.name] and report.built == []


@pytest.mark.network
def test_an_altered_wheel_fails_the_hash_check_of_the_offline_install(
    filled: Filled, tmp_path: Path
) -> None:
    wheels = copy_wheelhouse(filled, tmp_path)
    (victim,) = wheels.glob("iniconfig-*.whl")
    (other,) = wheels.glob("pluggy-*.whl")
    victim.write_bytes(other.read_bytes())  # a valid wheel, the wrong bytes
    with pytest.raises(Failed, match=r"iniconfig.*does not match the hash") as info:
        verify_wheelhouse(sub_lock(filled, tmp_path, "iniconfig"), wheels)
    assert not isinstance(info.value, MissingWheel)


@pytest.mark.network
def test_editable_install_fails_when_the_back_end_is_not_in_the_wheelhouse(
    filled: Filled, tmp_path: Path
) -> None:
    other = RepoBuilder(tmp_path / "flitproj")
    other.commit(
        "Add flitproj",
        {
            "pyproject.toml": '[build-system]\nrequires = ["flit_core>=3.2,<4"]\n'
            'build-backend = "flit_core.buildapi"\n\n[project]\nname = "flitproj"\n'
            'version = "0.1"\ndescription = "x"\n',
            "flitproj/__init__.py": "",
        },
    )
    lock = sub_lock(filled, tmp_path, "iniconfig")
    with pytest.raises(MissingWheel, match=r"editable install of .*flitproj.* lacks flit.core"):
        verify_wheelhouse(lock, filled.wheelhouse, editable=other.path)


@pytest.mark.network
def test_a_wheel_built_for_one_era_serves_the_next(
    filled: Filled, tmp_path: Path, pip_cache: Path
) -> None:
    lock = tmp_path / "era2.txt"
    lock_era(era_of(["docopt", "iniconfig"]), PY, lock, cache_dir=pip_cache)
    (docopt,) = [e for e in read_lock(lock) if e.name == "docopt"]
    assert len(docopt.hashes) == 1  # a fresh lock knows only the sdist on the index

    wheels = copy_wheelhouse(filled, tmp_path)
    report = fill_wheelhouse(lock, wheels, PY, cache_dir=pip_cache)
    assert report.downloaded == [] and report.built == []  # nothing rebuilt, nothing fetched
    (built,) = wheels.glob("docopt-*.whl")
    digest = hashlib.sha256(built.read_bytes()).hexdigest()
    assert f"sha256:{digest}" in next(e for e in read_lock(lock) if e.name == "docopt").hashes
    assert f"# cra: {built.name} already in the wheelhouse: sha256:{digest}" in lock.read_text()
    verify_wheelhouse(lock, wheels)


@pytest.mark.network
def test_lock_and_fill_with_no_index_from_local_wheels(filled: Filled, tmp_path: Path) -> None:
    """The packaging path with `no_index` + `find_links`: no network at all."""
    lock = tmp_path / "offline.txt"
    lock_era(filled.era, PY, lock, find_links=[filled.wheelhouse], no_index=True)
    online = {(e.name, e.version) for e in read_lock(filled.lock)}
    assert {(e.name, e.version) for e in read_lock(lock)} == online
    assert str(filled.wheelhouse) not in lock.read_text()

    wheels = tmp_path / "wheels"
    report = fill_wheelhouse(lock, wheels, PY, find_links=[filled.wheelhouse], no_index=True)
    assert sorted(report.downloaded) == sorted(p.name for p in filled.wheelhouse.glob("*.whl"))
    assert report.built == []  # the wheel cra built online is reused, by its recorded hash


@pytest.mark.network
def test_a_nonexistent_version_is_a_lock_error_naming_it(tmp_path: Path, pip_cache: Path) -> None:
    out = tmp_path / "lock.txt"
    with pytest.raises(LockError, match=r"iniconfig==999\.0"):
        lock_era(era_of(["iniconfig==999.0"]), PY, out, log=tmp_path / "log", cache_dir=pip_cache)
    assert not out.exists() and not list(tmp_path.glob("lock.txt*"))
    assert "iniconfig==999.0" in (tmp_path / "log").read_text()


@pytest.mark.network
def test_a_conflict_is_a_lock_error_naming_both_sides(tmp_path: Path, pip_cache: Path) -> None:
    with pytest.raises(LockError) as info:
        lock_era(
            era_of(["pytest==8.0.0"], ["pluggy<1"]), PY, tmp_path / "l.txt", cache_dir=pip_cache
        )
    assert "pluggy<1" in str(info.value) and "pytest==8.0.0" in str(info.value)


@pytest.mark.network
@pytest.mark.skipif(find_uv() is None, reason="uv is not installed")
def test_another_python_is_locked_with_uv_and_its_markers(tmp_path: Path, pip_cache: Path) -> None:
    reqs = ["iniconfig", "tomli; python_version < '3.11'"]
    lock_era(era_of(reqs), "3.10", tmp_path / "310.txt", cache_dir=pip_cache)
    assert "tomli" in {e.name for e in read_lock(tmp_path / "310.txt")}
    report = fill_wheelhouse(tmp_path / "310.txt", tmp_path / "wheels", "3.10", cache_dir=pip_cache)
    assert any(w.startswith("tomli-") for w in report.downloaded)

    lock_era(era_of(reqs), "3.12", tmp_path / "312.txt", cache_dir=pip_cache)
    assert "tomli" not in {e.name for e in read_lock(tmp_path / "312.txt")}


# ---------------------------------------------------------------------------------------
# No network needed


LOCK = """\
# cra lock for dependency era x, Python 3.11
docopt==0.6.2 \\
    --hash=sha256:aaaa
    # via -r requirements.in
tomli==2.0.1 ; python_version < "3.11" \\
    --hash=sha256:bbbb \\
    --hash=sha256:cccc
    # via -r requirements.in
"""


def test_read_lock_and_recording_a_built_wheels_hash(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text(LOCK)
    docopt, tomli = read_lock(lock)
    assert (docopt.name, docopt.version, docopt.hashes) == ("docopt", "0.6.2", ["sha256:aaaa"])
    assert tomli.hashes == ["sha256:bbbb", "sha256:cccc"]
    assert docopt.applies_to("3.11") and tomli.applies_to("3.10") and not tomli.applies_to("3.11")

    built = {0: ("docopt-0.6.2-py3-none-any.whl", "dddd", "built from docopt-0.6.2.tar.gz")}
    _add_built_hashes(lock, [docopt, tomli], built)
    docopt2, tomli2 = read_lock(lock)
    assert docopt2.hashes == ["sha256:aaaa", "sha256:dddd"]
    assert tomli2.hashes == tomli.hashes
    assert lock.read_text().endswith(
        "# cra: docopt-0.6.2-py3-none-any.whl built from docopt-0.6.2.tar.gz: sha256:dddd\n"
    )
    # recording the same wheel twice changes nothing
    before = lock.read_text()
    _add_built_hashes(lock, [docopt2, tomli2], built)
    assert lock.read_text() == before


def test_an_unpinned_lock_line_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("iniconfig>=1 \\\n    --hash=sha256:aa\n")
    with pytest.raises(Failed, match="not pinned"):
        read_lock(lock)


def test_python_version_must_be_major_minor(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="X.Y"):
        lock_era(era_of(["iniconfig"]), "3", tmp_path / "l.txt")
    assert not (tmp_path / "l.txt").exists()


def test_wheel_inventory_lists_wheels_with_their_sha256_and_size(tmp_path: Path) -> None:
    (tmp_path / "b-1.0-py3-none-any.whl").write_bytes(b"bbb")
    (tmp_path / "a-1.0-py3-none-any.whl").write_bytes(b"aaa")
    (tmp_path / "a-1.0.tar.gz").write_bytes(b"sdist")
    assert wheel_inventory(tmp_path) == [
        {"file": "a-1.0-py3-none-any.whl", "sha256": hashlib.sha256(b"aaa").hexdigest(), "size": 3},
        {"file": "b-1.0-py3-none-any.whl", "sha256": hashlib.sha256(b"bbb").hexdigest(), "size": 3},
    ]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (  # pip: a version that does not exist
            (
                "  ERROR: Could not find a version that satisfies the requirement x==9 "
                "(from versions: 1.0)\n"
                'Traceback (most recent call last):\n  File "a.py", line 1\n'
                "pip._internal.exceptions.DistributionNotFound: "
                "No matching distribution found for x==9\n"
            ),
            "No matching distribution found for x==9",
        ),
        (  # pip: a transitive conflict
            (
                "ERROR: Cannot install a==1 and b==2 because these package versions have "
                "conflicting dependencies.\n"
                "\nThe conflict is caused by:\n    a 1 depends on c<1\n    b 2 depends on c>=2\n\n"
                "To fix this you could try to:\n1. loosen the range\n"
            ),
            "conflict: a 1 depends on c<1; b 2 depends on c>=2",
        ),
        (  # uv, not on a terminal
            (
                "error: No solution found when resolving dependencies\n"
                "  cause: Because there is no version of x==9 and you require x==9,\n"
                "      we can conclude that your requirements are unsatisfiable.\n"
            ),
            (
                "Because there is no version of x==9 and you require x==9, we can conclude that "
                "your requirements are unsatisfiable."
            ),
        ),
        ("some tool\nerror: it broke badly\nhint: try again\n", "it broke badly"),
    ],
    ids=["pip-not-found", "pip-conflict", "uv", "other"],
)
def test_the_line_that_says_what_is_wrong(output: str, expected: str) -> None:
    assert _lock_failure(output) == expected


def test_a_uv_build_failure_names_the_sdist_and_its_cause() -> None:
    output = (
        "error: Failed to build `nodeenv==1.3.2`\n  cause: The build backend returned an error\n"
        "         [stderr]\n         Traceback (most recent call last):\n"
        "           File \"nodeenv.py\", line 43, in <module>\n"
        "             from pkg_resources import parse_version\n"
        "         ModuleNotFoundError: No module named 'pkg_resources'\n\nhint: `nodeenv` (v1.3.2) was included\n"
    )
    assert _lock_failure(output) == ("Failed to build `nodeenv==1.3.2`: ModuleNotFoundError: "
                                     "No module named 'pkg_resources'")
