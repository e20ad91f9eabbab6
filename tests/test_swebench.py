"""SWE-bench-format instances: cra's tasks exported, and other people's instances checked
with cra's oracle, on a real repo validated offline from a real wheelhouse."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from repo_builder import RepoBuilder
from test_validation import PYPROJECT
from wheels import locked_era

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.tasks import get_task
from appliance.errors import BadInput, NotFound
from appliance.records import CommitRecord, FileChange, RepoRecord
from harness.sandbox import Limits
from harness.swebench import (
    INSTANCE_FIELDS,
    Agreement,
    check_instances,
    export_instances,
    read_instances,
    repo_slug,
)
from harness.validation import ValidationOptions, validate_repo

network = pytest.mark.network
OPTIONS = ValidationOptions(limits=Limits(timeout_s=60))

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
TEST_ADD = TESTS + "\n\ndef test_add():\n    assert add(2, 3) == 5\n"


@dataclass
class World:
    home: Home
    db: Database
    base: str
    sha: str
    src: RepoBuilder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> World:
    root = tmp_path_factory.mktemp("swebench")
    home = Home(root / "home")
    src = RepoBuilder(root / "src")
    base = src.commit("Start calc", {"pyproject.toml": PYPROJECT, "calc/__init__.py": BUGGY,
                                     "tests/test_calc.py": TESTS})
    sha = src.commit("Fix add so it adds\n\nadd() subtracted.", {"calc/__init__.py": FIXED,
                                                                 "tests/test_calc.py": TEST_ADD})
    shutil.copytree(src.path, home.repo_dir("calc"))
    era = locked_era(home, "calc", wheel_cache, base, key="e" * 64)
    commit = CommitRecord(sha=sha, parent=base, author_date="2020-09-13T13:00:00+00:00", author_ts=1_600_002_600,
                          title="Fix add so it adds", message="Fix add so it adds\n\nadd() subtracted.\n",
                          files=[FileChange("calc/__init__.py", 1, 1, "source"),
                                 FileChange("tests/test_calc.py", 3, 0, "test")], era_key=era.key)
    db = Database(home.db_path)
    register_repo(db, RepoRecord("calc", "https://github.com/acme/calc.git", sha, "main",
                                 f"{sys.version_info[0]}.{sys.version_info[1]}", "python -m pytest"),
                  [era], [commit])
    assert validate_repo(home, db, "calc", workers=1, options=OPTIONS)["valid"] == 1
    yield World(home, db, base, sha, src)
    db.close()


def test_repo_slugs_come_from_the_origin() -> None:
    assert repo_slug("https://github.com/python-attrs/attrs.git", "attrs") == "python-attrs/attrs"
    assert repo_slug("git@github.com:hynek/structlog.git", "structlog") == "hynek/structlog"
    assert repo_slug("/srv/mirror/calc", "calc") == "local/calc"


@network
def test_a_task_exports_with_the_fields_and_types_swe_bench_publishes(world: World) -> None:
    [row] = export_instances(world.db, "calc")
    assert tuple(row) == INSTANCE_FIELDS
    assert row["instance_id"] == f"acme__calc-{world.sha[:12]}" and row["repo"] == "acme/calc"
    assert row["base_commit"] == world.base and row["environment_setup_commit"] == world.base
    assert row["FAIL_TO_PASS"] == '["tests/test_calc.py::test_add"]'  # a JSON-encoded list, as published
    assert json.loads(row["PASS_TO_PASS"]) == ["tests/test_calc.py::test_zero"]
    assert row["version"] == "e" * 12 and row["created_at"] == "2020-09-13T13:00:00+00:00"
    task = get_task(world.db, "calc", world.sha)
    assert (row["patch"], row["test_patch"]) == (task.gold_patch, task.test_patch)
    assert row["problem_statement"].startswith("Fix add so it adds")
    assert export_instances(world.db, "calc", status="flaky") == []


@network
def test_the_cli_export_loads_with_datasets(world: World, tmp_path: Path, monkeypatch, capsys) -> None:
    datasets = pytest.importorskip("datasets", reason="the train extra (datasets) is not installed")
    from appliance.cli import main

    monkeypatch.setenv("CRA_HOME", str(world.home.root))
    out = tmp_path / "calc.jsonl"
    assert main(["harness", "tasks", "calc", "--format", "swebench", "--out", str(out)]) == 0
    assert "1 SWE-bench instance(s)" in capsys.readouterr().err
    ds = datasets.load_dataset("json", data_files=str(out), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 1 and set(ds.column_names) == set(INSTANCE_FIELDS)
    assert json.loads(ds[0]["FAIL_TO_PASS"]) == ["tests/test_calc.py::test_add"]
    assert main(["harness", "tasks", "calc", "--format", "swebench"]) == 0  # to standard output
    assert json.loads(capsys.readouterr().out)["base_commit"] == world.base


def _instance(world: World, **changes) -> dict:
    [row] = export_instances(world.db, "calc")
    return {**row, **changes}


@network
def test_check_instances_reports_agreement_per_instance_with_the_reason(world: World, tmp_path: Path) -> None:
    f2p = "tests/test_calc.py::test_add"
    rows = [
        _instance(world, instance_id="same"),
        # Theirs also counts a test that passes before the patch: cra finds a subset.
        _instance(world, instance_id="subset", FAIL_TO_PASS=[f2p, "tests/test_calc.py::test_zero"]),
        _instance(world, instance_id="superset", FAIL_TO_PASS="[]"),
        _instance(world, instance_id="different", FAIL_TO_PASS=json.dumps(["tests/test_calc.py::test_mul"])),
        _instance(world, instance_id="no-apply", patch=_instance(world)["patch"].replace("a - b", "a * b")),
        _instance(world, instance_id="no-base", base_commit="0123456789abcdef0123456789abcdef01234567"),
    ]
    path = tmp_path / "theirs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {r.instance_id: r for r in check_instances(world.home, world.db, path, options=OPTIONS)}
    assert {k: r.agreement for k, r in results.items()} == {
        "same": Agreement.SAME, "subset": Agreement.SUBSET, "superset": Agreement.SUPERSET,
        "different": Agreement.DIFFERENT, "no-apply": Agreement.UNCHECKED, "no-base": Agreement.UNCHECKED,
    }
    assert results["same"].cra == [f2p] and results["same"].pass_to_pass == "same"
    assert "test_zero (before: passed, after: passed)" in results["subset"].reason
    assert f"FAIL_TO_PASS only for cra: {f2p} (before: failed" in results["superset"].reason
    assert "test_mul (not collected by cra" in results["different"].reason
    assert "the patch does not apply" in results["no-apply"].reason and results["no-apply"].cra_status is None
    assert "is not in the package's clone" in results["no-base"].reason
    assert all(r.package == "calc" for r in results.values())
    # The check never touched the package's tasks or branches.
    assert get_task(world.db, "calc", world.sha).fail_to_pass == [f2p]
    assert world.src.git("rev-parse", "HEAD").strip() == world.sha


@network
def test_check_instances_cli_prints_a_row_per_instance(world: World, tmp_path: Path, monkeypatch, capsys) -> None:
    from appliance.cli import main

    monkeypatch.setenv("CRA_HOME", str(world.home.root))
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(_instance(world)) + "\n")
    assert main(["harness", "check-instances", str(path), "--json", "--timeout", "60"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["agreement"] == "same" and result["cra_status"] == "valid"


def test_bad_instance_files_are_refused_naming_the_line(db: Database, tmp_path: Path) -> None:
    good = {"instance_id": "a", "repo": "acme/calc", "base_commit": "abc1234", "patch": "x",
            "test_patch": "", "FAIL_TO_PASS": "[]"}
    cases = [
        ("{not json}\n", r"line 1 is not JSON"),
        (json.dumps({k: v for k, v in good.items() if k != "base_commit"}) + "\n", r"line 1: the object: 'base_commit' is a required"),
        (json.dumps(good) + "\n" + json.dumps({**good, "base_commit": "zz"}) + "\n", r"line 2: base_commit"),
        (json.dumps({**good, "FAIL_TO_PASS": "not a list"}) + "\n", r"line 1: FAIL_TO_PASS is a string but not a JSON list"),
        (json.dumps(good) + "\n" + json.dumps(good) + "\n", r"line 2: instance a appears twice"),
        ("\n", "holds no instance"),
    ]
    for text, match in cases:
        path = tmp_path / "bad.jsonl"
        path.write_text(text)
        with pytest.raises(BadInput, match=match):
            read_instances(path)
    path.write_text(json.dumps(good) + "\n")
    with pytest.raises(NotFound, match="is for repo 'acme/calc', which is not packaged here"):
        check_instances(Home(tmp_path), db, path)
