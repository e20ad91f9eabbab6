"""manifest.json: built from records, checked against the schema on every write and read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from appliance.db.corpus import get_commits, get_eras, get_repo, register_repo
from appliance.errors import ManifestError
from appliance.packaging.manifest import (
    build_manifest,
    load_schema,
    manifest_records,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from appliance.records import CommitRecord, EraRecord, FileChange, RepoRecord

ROOT = Path(__file__).resolve().parent.parent


def sha(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def sha256(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def records() -> tuple[RepoRecord, list[EraRecord], list[CommitRecord], list[dict[str, Any]]]:
    """A small but complete package: a locked and an unresolvable era, kept and rejected commits."""
    era_a, era_b = sha256("era-a"), sha256("era-b")
    commits = []
    for i in range(5):
        c = CommitRecord(
            sha=sha(f"c{i}"),
            parent=sha(f"c{i - 1}") if i else None,
            author_date=f"2020-09-1{i}T10:00:00+02:00",
            author_ts=1_600_000_000 + i * 3600,
            title=f"Add feature {i}",
            message=f"Add feature {i}\n\nBecause.",
            files=[
                FileChange("lib/core.py", 10, 2, "source"),
                FileChange("tests/test_core.py", 5, 0, "test"),
            ],
            symbols={"lib/core.py": ["parse", "Parser.feed"]},
            scores={"message": 0.75, "size": 1},
            era_key=era_a if i < 3 else era_b,
        )
        commits.append(c)
    commits[1].reject("message", "version bump")
    commits[1].era_key = None
    commits[4].files.append(FileChange("docs/new.md", 3, 0, "other", old_path="docs/old.md"))
    eras = [
        EraRecord(
            key=era_a,
            requirements=["attrs>=20"],
            build_requires=["setuptools>=40.8.0", "wheel"],
            first_commit=commits[0].sha,
            commits=[commits[0].sha, commits[2].sha],
            lock_path=f"locks/{era_a[:12]}.txt",
            lock_sha256=sha256("lock"),
            status="locked",
            project="lib",
            requires_python=">=3.8",
            python="3.11",
            locked_as_of="2020-09-15T10:00:00Z",
            lock_tool="uv pip compile",
            notes=["as of 2020-09-15: pytest 6.0.2 of this lock does not run on Python 3.11",
                   "pytest, setuptools and 1 more taken as of today"],
        ),
        EraRecord(
            key=era_b,
            requirements=["nosuchpkg==99"],
            build_requires=["hatchling"],
            first_commit=commits[3].sha,
            commits=[commits[3].sha, commits[4].sha],
            status="unresolvable",
            error="pip-compile: no matching distribution for nosuchpkg==99",
        ),
    ]
    repo = RepoRecord(
        name="lib",
        origin_url="https://example.invalid/lib.git",
        head_sha=commits[-1].sha,
        default_branch="main",
        python_version="3.11",
        test_cmd="python -m pytest",
        branches=["2.x-line"],
    )
    wheels = [{"file": "attrs-23.1.0-py3-none-any.whl", "sha256": sha256("w"), "size": 1234}]
    return repo, eras, commits, wheels


@pytest.fixture
def manifest() -> dict[str, Any]:
    return build_manifest(*records())


def test_schema_is_valid_and_manifests_schema_json_is_the_same_file() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads((ROOT / "manifests" / "schema.json").read_text()) == schema
    assert schema["additionalProperties"] is False


def test_build_splits_kept_and_rejected_and_carries_the_cra_version(
    manifest: dict[str, Any],
) -> None:
    from appliance import __version__

    assert manifest["format_version"] == 1
    assert manifest["cra_version"] == __version__
    assert [c["status"] for c in manifest["commits"]] == ["kept"] * 4
    assert [c["reject_stage"] for c in manifest["rejected"]] == ["message"]
    assert manifest["eras"][0]["lock"].startswith("locks/")
    assert manifest["eras"][1]["lock"] is None
    validate_manifest(manifest)


def test_write_then_read_round_trips_and_returns_the_file_sha(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    path = tmp_path / "manifests" / "lib.json"
    digest = write_manifest(path, manifest)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_manifest(path) == manifest
    assert [p.name for p in path.parent.iterdir()] == ["lib.json"]  # no temp file left


def test_records_survive_manifest_and_database(
    tmp_path: Path, db, manifest: dict[str, Any]
) -> None:
    repo, eras, commits, _ = records()
    write_manifest(tmp_path / "lib.json", manifest)
    repo2, eras2, commits2 = manifest_records(
        read_manifest(tmp_path / "lib.json"), manifest_sha256="ab" * 32
    )
    assert repo2.source == "imported" and repo2.manifest_sha256 == "ab" * 32
    assert {c.sha: c.to_dict() for c in commits2} == {c.sha: c.to_dict() for c in commits}
    assert eras2 == eras
    register_repo(db, repo2, eras2, commits2)
    assert get_repo(db, "lib").head_sha == repo.head_sha
    assert [c.sha for c in get_commits(db, "lib", status="kept")] == [
        c.sha for c in commits if c.status == "kept"
    ]
    assert get_eras(db, "lib") == eras  # how each era was locked, too
    assert repo2.branches == get_repo(db, "lib").branches == ["2.x-line"]
    by_sha = {c.sha: c for c in get_commits(db, "lib")}
    assert by_sha[commits[4].sha].files[-1].old_path == "docs/old.md"
    assert by_sha[commits[2].sha].era_key == eras[0].key


def _broken(manifest: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(manifest))
    *parents, last = [int(p) if p.isdigit() else p for p in pointer.strip("/").split("/")]
    target = doc
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return doc


def test_a_manifest_written_before_eras_recorded_their_locking_still_reads(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    del manifest["branches"]
    for era in manifest["eras"]:
        for key in ("project", "requires_python", "python", "locked_as_of", "lock_tool", "notes"):
            del era[key]
    write_manifest(tmp_path / "lib.json", manifest)
    repo, eras, _ = manifest_records(read_manifest(tmp_path / "lib.json"))
    assert repo.branches == [] and eras[0].locked_as_of is None and eras[0].notes == []


def test_an_era_date_must_be_a_date(manifest: dict[str, Any]) -> None:
    manifest["eras"][0]["locked_as_of"] = "last spring"
    with pytest.raises(ManifestError, match="/eras/0/locked_as_of"):
        validate_manifest(manifest)


@pytest.mark.parametrize(
    ("pointer", "value", "says"),
    [
        ("/commits/3/sha", "zz", "'zz' does not match"),
        ("/head_sha", "ABCDEF", "does not match"),
        ("/commits/0/status", "rejected", "'kept' was expected"),
        ("/rejected/0/reject_reason", None, "None is not of type 'string'"),
        ("/eras/0/lock", None, "None is not of type 'string'"),  # locked era without its lock
        ("/eras/0/status", "done", "is not one of"),
        ("/eras/1/lock", "locks/x.txt", "is not of type 'null'"),  # unresolvable era with a lock
        ("/wheelhouse/0/file", "../../evil.whl", "does not match"),  # no path escapes on import
        ("/eras/0/lock", "../outside.txt", "does not match"),
        ("/commits/1/files/0/kind", "docs", "is not one of"),
        ("/commits/2/author_date", "yesterday", "does not match"),
        ("/commits/2/surprise", 1, "Additional properties are not allowed"),
        ("/python_version", "three", "does not match"),
    ],
)
def test_schema_violations_name_the_file_and_the_pointer(
    tmp_path: Path, manifest: dict[str, Any], pointer: str, value: Any, says: str
) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_broken(manifest, pointer, value)))
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {pointer}: ")
    assert says in text
    assert info.value.exit_code == 2


def test_missing_required_field_is_reported_at_its_parent(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_broken(manifest, "/eras/1/first_commit", KeyError)))
    with pytest.raises(ManifestError, match=r"/eras/1: 'first_commit' is a required property"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("pointer", "value", "says"),
    [
        ("/commits/1/sha", sha("c0"), "listed twice"),
        ("/commits/0/era_key", sha256("nope"), "is not in /eras"),
        ("/eras/1/key", sha256("era-a"), "listed twice"),
        ("/eras/0/commits/0", sha("stranger"), "is not in /commits or /rejected"),
    ],
)
def test_cross_references_are_checked_too(
    tmp_path: Path, manifest: dict[str, Any], pointer: str, value: Any, says: str
) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_broken(manifest, pointer, value)))
    with pytest.raises(ManifestError, match=rf"x\.json: {pointer}: .*{says}"):
        read_manifest(path)


def test_write_refuses_an_invalid_manifest_and_keeps_the_old_file(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    path = tmp_path / "lib.json"
    write_manifest(path, manifest)
    before = path.read_bytes()
    with pytest.raises(ManifestError, match=r"lib\.json: /commits/0/sha: "):
        write_manifest(path, _broken(manifest, "/commits/0/sha", "not-a-sha"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.json"]


def test_invalid_json_and_missing_file_are_manifest_errors(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(manifest)[:-20])
    with pytest.raises(ManifestError, match=r"x\.json: not valid JSON: .* line 1"):
        read_manifest(path)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(path)
    with pytest.raises(ManifestError, match=r"nope\.json: the manifest is missing"):
        read_manifest(tmp_path / "nope.json")
    path.write_text("[1, 2]")
    with pytest.raises(ManifestError, match=r"x\.json: /: \[1, 2\] is not of type 'object'"):
        read_manifest(path)


def test_a_newer_format_asks_for_a_newer_cra(tmp_path: Path, manifest: dict[str, Any]) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(manifest | {"format_version": 2}))
    with pytest.raises(ManifestError, match=r"/format_version: format 2 is newer .*upgrade cra"):
        read_manifest(path)
