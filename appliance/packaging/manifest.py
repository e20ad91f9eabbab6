"""manifest.json: what a repo package holds, checked against a JSON Schema on every write and read.

The manifest is the only thing the air-gapped side knows about a package besides the bytes
themselves, so it must be trustworthy: ``write_manifest`` refuses to write one that breaks
``appliance/schemas/manifest.schema.json`` (also reachable as ``manifests/schema.json``),
``read_manifest`` refuses to use one, and both name the file and the JSON pointer of the
first violation. A few facts the schema cannot express (unique shas, commits pointing at
known eras) are checked here too, with the same kind of message.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance import jsonschemas
from appliance.atomic import write_atomic
from appliance.errors import ManifestError
from appliance.records import CommitRecord, EraRecord, RepoRecord

FORMAT_VERSION = 1
SCHEMA_RESOURCE = ("schemas", "manifest.schema.json")
_HINT = "re-create the package on the connected side with 'cra corpus add' and export it again"
_MAX_MESSAGE = 200


def load_schema() -> dict[str, Any]:
    """The manifest JSON Schema shipped inside the ``appliance`` package."""
    return jsonschemas.load_schema(SCHEMA_RESOURCE[1])


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _fail(where: Path | str | None, pointer: str, message: str) -> ManifestError:
    label = str(where) if where is not None else "manifest"
    return ManifestError(f"{label}: {pointer}: {_short(message)}", hint=_HINT, path=where)


def validate_manifest(manifest: Any, *, where: Path | str | None = None) -> None:
    """Raise ManifestError for the first thing wrong with ``manifest``; ``where`` names the file."""
    if isinstance(manifest, dict) and "format_version" in manifest:
        version = manifest["format_version"]
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise ManifestError(
                f"{where or 'manifest'}: /format_version: format {version} is newer than this cra"
                f" reads ({FORMAT_VERSION})",
                hint="upgrade cra on this machine",
            )
    error = jsonschemas.first_error(SCHEMA_RESOURCE[1], manifest)
    if error is not None:
        raise _fail(where, jsonschemas.pointer(error[0]), error[1])
    _check_references(manifest, where)


def _check_references(m: dict[str, Any], where: Path | str | None) -> None:
    """What JSON Schema cannot say: uniqueness and references between sections."""
    era_keys: set[str] = set()
    for i, era in enumerate(m["eras"]):
        if era["key"] in era_keys:
            raise _fail(where, f"/eras/{i}/key", f"era {era['key'][:12]} is listed twice")
        era_keys.add(era["key"])
    files: set[str] = set()
    for i, wheel in enumerate(m["wheelhouse"]):
        if wheel["file"] in files:
            raise _fail(where, f"/wheelhouse/{i}/file", f"{wheel['file']} is listed twice")
        files.add(wheel["file"])
    shas: set[str] = set()
    for section in ("commits", "rejected"):
        for i, commit in enumerate(m[section]):
            if commit["sha"] in shas:
                raise _fail(where, f"/{section}/{i}/sha", f"commit {commit['sha']} is listed twice")
            shas.add(commit["sha"])
            if commit["era_key"] is not None and commit["era_key"] not in era_keys:
                raise _fail(
                    where,
                    f"/{section}/{i}/era_key",
                    f"era {commit['era_key'][:12]} is not in /eras",
                )
    for i, era in enumerate(m["eras"]):
        for j, sha in enumerate(era["commits"]):
            if sha not in shas:
                raise _fail(
                    where, f"/eras/{i}/commits/{j}", f"commit {sha} is not in /commits or /rejected"
                )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _era_dict(era: EraRecord) -> dict[str, Any]:
    return {
        "key": era.key,
        "requirements": list(era.requirements),
        "build_requires": list(era.build_requires),
        "first_commit": era.first_commit,
        "lock": era.lock_path,
        "lock_sha256": era.lock_sha256,
        "status": era.status,
        "error": era.error,
        "commits": list(era.commits),
        "project": era.project,
        "requires_python": era.requires_python,
        "python": era.python,
        "locked_as_of": era.locked_as_of,
        "lock_tool": era.lock_tool,
        "notes": list(era.notes),
    }


def build_manifest(
    repo: RepoRecord,
    eras: list[EraRecord],
    commits: list[CommitRecord],
    wheelhouse: list[dict[str, Any]],
) -> dict[str, Any]:
    """The manifest of a repo package, kept and rejected commits in separate lists.

    Not validated here (``write_manifest`` does that) so a caller can inspect a draft.
    """
    from appliance import __version__

    return {
        "format_version": FORMAT_VERSION,
        "name": repo.name,
        "origin_url": repo.origin_url,
        "head_sha": repo.head_sha,
        "default_branch": repo.default_branch,
        "python_version": repo.python_version,
        "test_cmd": repo.test_cmd,
        "created_at": _now(),
        "cra_version": __version__,
        "eras": [_era_dict(e) for e in eras],
        "wheelhouse": sorted(
            (
                {"file": w["file"], "sha256": w["sha256"], "size": int(w["size"])}
                for w in wheelhouse
            ),
            key=lambda w: w["file"],
        ),
        "commits": [c.to_dict() for c in commits if c.status == "kept"],
        "rejected": [c.to_dict() for c in commits if c.status != "kept"],
        "branches": list(repo.branches),
    }


def dump_manifest(manifest: dict[str, Any]) -> bytes:
    """The exact bytes cra writes: stable key order, 2-space indent, trailing newline."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_manifest(path: Path | str, manifest: dict[str, Any]) -> str:
    """Validate, then write atomically (temp file + ``os.replace``); returns the file's sha256.

    A crash mid-write leaves the previous manifest (or none), never a truncated one.
    """
    path = Path(path)
    validate_manifest(manifest, where=path)
    data = dump_manifest(manifest)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def read_manifest(path: Path | str) -> dict[str, Any]:
    """Load and validate a manifest; anything wrong is a ManifestError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: the manifest is missing", hint=_HINT) from exc
    except OSError as exc:
        raise ManifestError(
            f"{path}: cannot read the manifest: {exc.strerror}", hint=_HINT
        ) from exc
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start})", hint=_HINT) from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", hint=_HINT
        ) from exc
    validate_manifest(manifest, where=path)
    return manifest  # type: ignore[no-any-return]


def manifest_records(
    manifest: dict[str, Any], *, source: str = "imported", manifest_sha256: str | None = None
) -> tuple[RepoRecord, list[EraRecord], list[CommitRecord]]:
    """Turn a (validated) manifest back into the records ``db.corpus.register_repo`` takes."""
    repo = RepoRecord(
        name=manifest["name"],
        origin_url=manifest["origin_url"],
        head_sha=manifest["head_sha"],
        default_branch=manifest["default_branch"],
        python_version=manifest["python_version"],
        test_cmd=manifest["test_cmd"],
        source=source,
        manifest_sha256=manifest_sha256,
        branches=list(manifest.get("branches", [])),
    )
    eras = [
        EraRecord(
            key=e["key"],
            requirements=list(e["requirements"]),
            build_requires=list(e["build_requires"]),
            first_commit=e["first_commit"],
            commits=list(e["commits"]),
            lock_path=e["lock"],
            lock_sha256=e["lock_sha256"],
            status=e["status"],
            error=e["error"],
            project=e.get("project"),
            requires_python=e.get("requires_python"),
            python=e.get("python"),
            locked_as_of=e.get("locked_as_of"),
            lock_tool=e.get("lock_tool"),
            notes=list(e.get("notes", [])),
        )
        for e in manifest["eras"]
    ]
    commits = [CommitRecord.from_dict(c) for c in [*manifest["commits"], *manifest["rejected"]]]
    return repo, eras, commits
