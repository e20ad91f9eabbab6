"""USB bundles: export repo packages to a folder, import them on the air-gapped side.

An exported package is one folder::

    <dest>/<name>/repo.bundle      git bundle --all of corpus/<name>/repo
                  wheels/*.whl     the flat wheelhouse packages/<name>/*.whl
                  locks/*.txt      the era locks packages/<name>/locks/*.txt
                  manifest.json    manifests/<name>.json, byte for byte
                  SHA256SUMS       sha256sum format, every other file of the folder

Import trusts nothing until every checksum matches (``git bundle verify`` alone accepts a
truncated bundle), then checks the manifest against the files, clones the bundle into a
staging folder and moves the result into place in one go, registering the package in the
same breath; any failure leaves the home exactly as it was. A process killed half-way
(kill -9) leaves a journal in its staging folder, and the next import (or any command that
opens the DB) undoes its moves unless the DB row landed, then clears the folder: nothing
stays in the home that the DB does not know of. Import never touches the network: git may
only use the file transport and pip is not involved.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from appliance.atomic import write_atomic
from appliance.config import IMPORT_STAGING_PREFIX, Home
from appliance.db.core import Database
from appliance.db.corpus import get_repo, register_repo
from appliance.errors import BadInput, BundleError, Failed, GitError, NotFound
from appliance.hashing import sha256_file
from appliance.packaging.manifest import manifest_records, read_manifest
from appliance.pipenv import clean_pip_env
from harness.git import git, git_bytes, head_sha

SUMS = "SHA256SUMS"
BUNDLE = "repo.bundle"
MANIFEST = "manifest.json"
WHEELS = "wheels"
LOCKS = "locks"
PARTIAL = ".cra-partial"  # suffix of files being written: never mistaken for a finished file
APPLIANCE_DIR = "appliance"
JOURNAL = "journal.json"
IMPORT_LOCK = "import.lock"  # var/import.lock
INSTALL_SCRIPT = "install-offline.sh"

# Import may only read the bundle file: every other git transport is refused.
OFFLINE_GIT = (
    "-c",
    "protocol.allow=never",
    "-c",
    "protocol.file.allow=always",
    "-c",
    "transfer.fsckObjects=true",
)

Progress = Callable[[int, int], None]
"""progress(done, total), called after each file."""

_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_AGAIN = "copy the folder again, or export it again with 'cra corpus export'"


@dataclass
class ExportResult:
    """What ``export_package`` did; ``written``/``skipped`` are counts for the CLI."""

    name: str
    path: Path
    written_files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    bytes_written: int = 0

    @property
    def written(self) -> int:
        return len(self.written_files)

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)


@dataclass
class ImportedPackage:
    name: str
    head_sha: str
    kept: int
    rejected: int
    eras: int
    wheels: int
    status: str  # imported | unchanged
    replaced: bool = False


@dataclass
class ImportResult:
    packages: list[ImportedPackage] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.packages]


# --------------------------------------------------------------------------- helpers


def _copy_hashed(src: Path, dst: Path) -> tuple[str, int]:
    """Copy src to a partial name next to dst, fsync, rename; returns (sha256, size) of the copy.

    Hashing the bytes as they are written (not the source afterwards) is what proves the
    file on the stick is right.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + PARTIAL)
    h = hashlib.sha256()
    size = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while block := fin.read(1 << 20):
                h.update(block)
                fout.write(block)
                size += len(block)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return h.hexdigest(), size


def format_sums(sums: dict[str, str]) -> bytes:
    """``sha256sum`` text format (two spaces), sorted, so ``sha256sum -c SHA256SUMS`` works."""
    return "".join(f"{sums[rel]}  {rel}\n" for rel in sorted(sums)).encode("utf-8")


def parse_sums(path: Path) -> dict[str, str]:
    """Read a SHA256SUMS file; a line that is not ``<sha256>  <relative path>`` is a BundleError."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise BundleError(
            "is missing (an interrupted export or an incomplete copy)", path=path, hint=_AGAIN
        ) from exc
    except UnicodeDecodeError as exc:
        raise BundleError("is not UTF-8 text", path=path, hint=_AGAIN) from exc
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SUM_LINE.match(line)
        if not m:
            raise BundleError(f"line {lineno} is not '<sha256>  <file>'", path=path, hint=_AGAIN)
        rel = m.group(2)
        if not _safe_rel(rel) or rel == SUMS:
            raise BundleError(f"line {lineno} names an unsafe path {rel!r}", path=path, hint=_AGAIN)
        if rel in sums:
            raise BundleError(f"line {lineno} lists {rel} a second time", path=path, hint=_AGAIN)
        sums[rel] = m.group(1).lower()
    return sums


def _safe_rel(rel: str) -> bool:
    """A plain relative POSIX path inside the folder: no '..', no absolute path, no backslash."""
    p = PurePosixPath(rel)
    return (
        "\\" not in rel
        and not p.is_absolute()
        and p.as_posix() == rel
        and all(part not in ("", ".", "..") for part in p.parts)
    )


def _folder_files(folder: Path) -> list[str]:
    """Every file under folder as a relative POSIX path; links and odd files are refused."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(dirpath)
        for entry in (*dirnames, *filenames):
            p = base / entry
            if p.is_symlink():
                raise BundleError(
                    "is a symbolic link; a bundle holds plain files only", path=p, hint=_AGAIN
                )
        for entry in filenames:
            p = base / entry
            if not p.is_file():
                raise BundleError("is not a regular file", path=p, hint=_AGAIN)
            found.append(p.relative_to(folder).as_posix())
    return sorted(found)


def _ref_heads(repo: Path, bundle: Path | None = None) -> set[tuple[str, str]]:
    """(sha, ref) pairs of a repo (refs plus HEAD) or of a bundle's header."""
    if bundle is not None:
        out = git(repo, "bundle", "list-heads", str(bundle))
    else:
        out = git(repo, "for-each-ref", "--format=%(objectname) %(refname)")
        out += f"{head_sha(repo)} HEAD\n"
    heads: set[tuple[str, str]] = set()
    for line in out.splitlines():
        sha, _, ref = line.partition(" ")
        if ref:
            heads.add((sha, ref))
    return heads


# --------------------------------------------------------------------------- export


@dataclass
class _Item:
    rel: str
    source: Path
    sha256: str  # what the copy must hash to (from the manifest)


def _prepare_export_folder(folder: Path, name: str) -> None:
    """Refuse to write into a folder that holds something other than an export of ``name``."""
    if folder.exists() and not folder.is_dir():
        raise BadInput("exists and is not a folder", path=folder, hint="choose another --to folder")
    if not folder.exists() or not any(folder.iterdir()):
        return
    manifest = folder / MANIFEST
    ours = (folder / SUMS).is_file() or manifest.is_file()
    if ours and manifest.is_file():
        try:
            ours = json.loads(manifest.read_text(encoding="utf-8")).get("name") == name
        except (ValueError, OSError, AttributeError):
            ours = True  # a damaged export of ours: it gets rewritten
    if not ours:
        raise BadInput(
            f"is not empty and is not an export of '{name}'",
            path=folder,
            hint="choose another --to folder or empty this one",
        )


def export_package(
    home: Home, name: str, dest_root: Path, progress: Progress | None = None
) -> ExportResult:
    """Write ``dest_root/<name>/`` (see module doc); re-running skips files already right.

    Every file is written under a ``.cra-partial`` name and renamed when whole, and
    SHA256SUMS is removed before the first change and written last, so an interrupted
    export is never taken for a complete one.
    """
    manifest, repo_dir = _local_package(home, name)
    items = _export_items(home, name, manifest)
    folder = Path(dest_root) / name
    _prepare_export_folder(folder, name)
    folder.mkdir(parents=True, exist_ok=True)
    run = _ExportRun(folder, name)
    run.drop_partials()
    total = len(items) + 1
    for done, item in enumerate(items, 1):
        run.copy(item)
        if progress:
            progress(done, total)
    run.bundle(repo_dir)
    if progress:
        progress(total, total)
    run.drop_stale()
    run.write_sums()
    return run.result


def _local_package(home: Home, name: str) -> tuple[dict[str, Any], Path]:
    """The package's manifest and clone, checked to agree (``NotFound`` / ``BadInput``)."""
    repo_dir = home.repo_dir(name)
    manifest_path = home.manifest_path(name)
    if not manifest_path.exists():
        raise NotFound(
            f"no repo package named '{name}'",
            path=manifest_path,
            hint="add it first with 'cra corpus add'",
        )
    manifest = read_manifest(manifest_path)
    if not (repo_dir / ".git").exists() and not (repo_dir / "HEAD").is_file():
        raise NotFound(
            "the package's clone is missing",
            path=repo_dir,
            hint=f"re-create it with 'cra corpus add {manifest['origin_url']} --name {name}'",
        )
    head = head_sha(repo_dir)
    if head != manifest["head_sha"]:
        raise BadInput(
            f"the clone's HEAD is {head[:12]} but manifests/{name}.json says"
            f" {manifest['head_sha'][:12]}",
            path=repo_dir,
            hint=f"re-run 'cra corpus add' for {name} so clone and manifest agree",
        )
    return manifest, repo_dir


def _export_items(home: Home, name: str, manifest: dict[str, Any]) -> list[_Item]:
    """Manifest, locks and wheels to copy, each with the sha256 its copy must have."""
    manifest_path = home.manifest_path(name)
    wheelhouse = home.wheelhouse(name)
    items: list[_Item] = [_Item(MANIFEST, manifest_path, sha256_file(manifest_path))]
    for era in manifest["eras"]:
        if era["lock"]:
            items.append(_Item(era["lock"], wheelhouse / era["lock"], era["lock_sha256"]))
    for wheel in manifest["wheelhouse"]:
        items.append(
            _Item(f"{WHEELS}/{wheel['file']}", wheelhouse / wheel["file"], wheel["sha256"])
        )
    for item in items:
        if not item.source.is_file():
            raise BadInput(
                f"is listed in manifests/{name}.json but missing",
                path=item.source,
                hint=f"re-run 'cra corpus add' for {name}",
            )
    return items


class _ExportRun:
    """One export into ``folder``: SHA256SUMS goes away before the first change
    (``invalidate``) and comes back last (``write_sums``)."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        self.result = ExportResult(name=name, path=folder)
        self.sums_path = folder / SUMS
        try:
            self.old_sums = parse_sums(self.sums_path) if self.sums_path.is_file() else {}
        except BundleError:
            self.old_sums = {}
        self.old_sums_bytes = self.sums_path.read_bytes() if self.sums_path.is_file() else b""
        self.new_sums: dict[str, str] = {}
        self.invalidated = False

    def invalidate(self) -> None:
        if not self.invalidated:
            self.sums_path.unlink(missing_ok=True)
            self.invalidated = True

    def drop_partials(self) -> None:
        """Remove what an interrupted run left half-written."""
        for rel in _folder_files(self.folder):
            if rel.endswith(PARTIAL):
                (self.folder / rel).unlink()
                self.result.removed_files.append(rel)

    def copy(self, item: _Item) -> None:
        target = self.folder / item.rel
        if target.is_file() and sha256_file(target) == item.sha256:
            self.result.skipped_files.append(item.rel)
        else:
            self.invalidate()
            digest, size = _copy_hashed(item.source, target)
            if digest != item.sha256:
                target.unlink()
                raise BadInput(
                    f"does not match the sha256 in manifests/{self.name}.json",
                    path=item.source,
                    hint=f"the local package is damaged: re-run 'cra corpus add' for {self.name}",
                )
            self.result.written_files.append(item.rel)
            self.result.bytes_written += size
        self.new_sums[item.rel] = item.sha256

    def bundle(self, repo_dir: Path) -> None:
        """``git bundle --all``, unless the one there already has every ref at its sha."""
        bundle = self.folder / BUNDLE
        if (
            bundle.is_file()
            and self.old_sums.get(BUNDLE) == sha256_file(bundle)
            and _ref_heads(repo_dir, bundle.resolve()) == _ref_heads(repo_dir)
        ):
            self.result.skipped_files.append(BUNDLE)
            self.new_sums[BUNDLE] = self.old_sums[BUNDLE]
            return
        self.invalidate()
        tmp = bundle.with_name(BUNDLE + PARTIAL).resolve()
        try:
            git(repo_dir, "bundle", "create", "--quiet", str(tmp), "--all")
            os.replace(tmp, bundle)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.new_sums[BUNDLE] = sha256_file(bundle)
        self.result.written_files.append(BUNDLE)
        self.result.bytes_written += bundle.stat().st_size

    def drop_stale(self) -> None:
        """Files of an earlier export that this one no longer has (e.g. an upgraded wheel)."""
        for rel in _folder_files(self.folder):
            if rel not in self.new_sums and rel != SUMS and rel.split("/", 1)[0] in (WHEELS, LOCKS):
                self.invalidate()
                (self.folder / rel).unlink()
                self.result.removed_files.append(rel)

    def write_sums(self) -> None:
        data = format_sums(self.new_sums)
        if self.sums_path.is_file() and data == self.old_sums_bytes:
            self.result.skipped_files.append(SUMS)
        else:
            write_atomic(self.sums_path, data, partial_suffix=PARTIAL)
            self.result.written_files.append(SUMS)


# --------------------------------------------------------------------------- import


@dataclass
class _Checked:
    folder: Path
    manifest: dict[str, Any]
    sums: dict[str, str]


def _is_appliance_folder(folder: Path) -> bool:
    return folder.name == APPLIANCE_DIR and (folder / INSTALL_SCRIPT).is_file()


def _looks_like_package(folder: Path) -> bool:
    return any((folder / f).exists() for f in (SUMS, MANIFEST, BUNDLE))


def find_packages(src: Path) -> list[Path]:
    """``src`` itself when it is a package folder, else its package subfolders (a USB root)."""
    src = Path(src)
    if not src.is_dir():
        raise BundleError(
            "is not a folder", path=src, hint="give the folder 'cra corpus export' wrote"
        )
    if _is_appliance_folder(src):
        raise BundleError(
            "holds cra's own wheelhouse, not a repo package",
            path=src,
            hint=f"install cra with {INSTALL_SCRIPT}; import the other folders",
        )
    if _looks_like_package(src):
        return [src]
    found = [
        d
        for d in sorted(src.iterdir())
        if d.is_dir()
        and not d.is_symlink()
        and not _is_appliance_folder(d)
        and _looks_like_package(d)
    ]
    if not found:
        raise BundleError(
            "holds no repo package (no folder with SHA256SUMS and manifest.json)",
            path=src,
            hint="give the folder 'cra corpus export --to' wrote",
        )
    return found


def verify_package(folder: Path, progress: Progress | None = None) -> _Checked:
    """Checksums first, then the manifest, then that they agree. Nothing is written."""
    folder = Path(folder)
    sums = parse_sums(folder / SUMS)
    present = [rel for rel in _folder_files(folder) if rel != SUMS]
    for rel in sorted(set(sums) - set(present)):
        raise BundleError("is listed in SHA256SUMS but missing", path=folder / rel, hint=_AGAIN)
    for rel in sorted(set(present) - set(sums)):
        raise BundleError(
            "is not listed in SHA256SUMS (an extra file: remove it)", path=folder / rel, hint=_AGAIN
        )
    for required in (MANIFEST, BUNDLE):
        if required not in sums:
            raise BundleError("is missing", path=folder / required, hint=_AGAIN)
    for done, rel in enumerate(sorted(sums), 1):
        if sha256_file(folder / rel) != sums[rel]:
            raise BundleError(
                "does not match its checksum in SHA256SUMS (truncated or altered)",
                path=folder / rel,
                hint=_AGAIN,
            )
        if progress:
            progress(done, len(sums))

    manifest = read_manifest(folder / MANIFEST)
    expected: dict[str, str] = {MANIFEST: sums[MANIFEST], BUNDLE: sums[BUNDLE]}
    for wheel in manifest["wheelhouse"]:
        rel = f"{WHEELS}/{wheel['file']}"
        expected[rel] = wheel["sha256"]
        if rel in sums and (folder / rel).stat().st_size != wheel["size"]:
            raise BundleError(
                f"is not the size manifest.json says ({wheel['size']} bytes)",
                path=folder / rel,
                hint=_AGAIN,
            )
    for era in manifest["eras"]:
        if era["lock"]:
            expected[era["lock"]] = era["lock_sha256"]
    for rel, digest in sorted(expected.items()):
        if rel not in sums:
            raise BundleError(
                "is named by manifest.json but not in the bundle", path=folder / rel, hint=_AGAIN
            )
        if sums[rel] != digest:
            raise BundleError(
                "differs from the sha256 manifest.json gives it", path=folder / rel, hint=_AGAIN
            )
    for rel in sorted(set(sums) - set(expected)):
        raise BundleError(
            "is not part of the package manifest.json describes",
            path=folder / rel,
            hint="remove it, or export the package again",
        )
    return _Checked(folder=folder, manifest=manifest, sums=sums)


def _clone_bundle(bundle: Path, dest: Path, manifest: dict[str, Any], staging: Path) -> None:
    """Verify and clone the bundle with only the file transport allowed, then check HEAD."""
    check_repo = staging / "verify.git"
    git(None, "init", "--quiet", "--bare", str(check_repo))
    try:
        git(check_repo, *OFFLINE_GIT, "bundle", "verify", "--quiet", str(bundle))
        heads = _ref_heads(check_repo, bundle)
        branch = manifest["default_branch"]
        pick = (
            ["--branch", branch] if (manifest["head_sha"], f"refs/heads/{branch}") in heads else []
        )
        git(None, *OFFLINE_GIT, "clone", "--quiet", *pick, str(bundle), str(dest))
    except GitError as exc:
        raise BundleError(f"git cannot use it: {exc.message}", path=bundle, hint=_AGAIN) from exc
    head = head_sha(dest)
    if head != manifest["head_sha"]:
        raise BundleError(
            f"its HEAD is {head[:12]} but manifest.json says {manifest['head_sha'][:12]}",
            path=bundle,
            hint="export the package again",
        )
    shas = [c["sha"] for c in (*manifest["commits"], *manifest["rejected"])]
    if shas:
        out = git_bytes(dest, "cat-file", "--batch-check", input="\n".join(shas).encode() + b"\n")
        for line in out.decode().splitlines():
            sha, _, kind = line.partition(" ")
            if not kind.startswith("commit"):
                raise BundleError(
                    f"lacks commit {sha} that manifest.json lists",
                    path=bundle,
                    hint="export the package again",
                )
    # The clone's origin is the stick; name the real origin (only ever read, never fetched).
    git(dest, "remote", "set-url", "origin", manifest["origin_url"])


def _missing_parents(path: Path) -> list[Path]:
    """The folders ``mkdir -p path`` would create, deepest first."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    return missing


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@dataclass
class _Move:
    """One staged item and where it goes; ``had_old``: the target existed before the import."""

    new: str
    target: str
    backup: str
    had_old: bool


@dataclass
class _Journal:
    """What an import is about to do to the home, written to ``staging/journal.json``
    before the first move, so that a process killed half-way (kill -9, a power cut) can be
    undone by the next one: moves are renames within one file system, so each item is
    always either old, absent or new, and the journal says which is which.

    The DB row is the commit point: once ``register_repo`` has stored a repo with this
    manifest sha, the import happened; until then, recovery puts the old files back.
    """

    name: str
    manifest_sha256: str
    moves: list[_Move]
    created: list[str]  # folders the moves create, deepest first: removed again on undo
    version: int = 1

    def write(self, staging: Path) -> None:
        data = {"version": self.version, "name": self.name, "manifest_sha256": self.manifest_sha256,
                "moves": [m.__dict__ for m in self.moves], "created": self.created}
        write_atomic(staging / JOURNAL, json.dumps(data, indent=1) + "\n")

    @classmethod
    def read(cls, staging: Path) -> _Journal | None:
        try:
            data = json.loads((staging / JOURNAL).read_text(encoding="utf-8"))
            return cls(name=data["name"], manifest_sha256=data["manifest_sha256"],
                       moves=[_Move(**m) for m in data["moves"]], created=list(data["created"]))
        except FileNotFoundError:
            return None  # killed before any move: the staging folder is all there is

    def apply(self) -> bool:
        """Move the old items aside and the new ones in; True when an old package was replaced."""
        for folder in reversed([Path(d) for d in self.created]):
            folder.mkdir(exist_ok=True)
        for m in self.moves:
            if m.had_old:
                os.replace(m.target, m.backup)
            os.replace(m.new, m.target)
        return any(m.had_old for m in self.moves)

    def undo(self) -> None:
        """Put the home back as it was before ``apply``, from whatever point it stopped at."""
        for m in reversed(self.moves):
            target, backup = Path(m.target), Path(m.backup)
            if m.had_old and not backup.exists():
                continue  # never moved aside: the target is still the old item
            if target.exists() or target.is_symlink():
                _remove(target)  # the new item, moved in
            if m.had_old:
                os.replace(backup, target)
        for folder in map(Path, self.created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _committed(db: Database, journal: _Journal) -> bool:
    try:
        return get_repo(db, journal.name).manifest_sha256 == journal.manifest_sha256
    except NotFound:
        return False


def recover_imports(home: Home, db: Database, *, wait: bool = True) -> list[str]:
    """Finish what killed imports left: undo the moves of one that never reached the DB,
    and remove every stale ``var/tmp/import-*`` staging folder. Returns the folders cleared.

    Runs under the import lock (``wait=False``: only when no import is running, else does
    nothing), so a running import's staging folder is never touched.
    """
    if not home.import_stagings():
        return []
    with _import_lock(home, wait=wait) as locked:
        return _recover(home, db) if locked else []


def _recover(home: Home, db: Database) -> list[str]:
    """``recover_imports`` for a caller that holds the import lock."""
    cleared: list[str] = []
    for staging in home.import_stagings():
        journal = _Journal.read(staging)
        if journal is not None and not _committed(db, journal):
            journal.undo()
        shutil.rmtree(staging)
        cleared.append(staging.name)
    return cleared


@contextmanager
def _import_lock(home: Home, *, wait: bool = True) -> Iterator[bool]:
    """One import at a time per home (``flock``, freed when the process dies)."""
    home.var.mkdir(parents=True, exist_ok=True)
    with (home.var / IMPORT_LOCK).open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stage(checked: _Checked, staging: Path) -> tuple[Path, Path, Path]:
    """Clone the bundle and copy wheels, locks and manifest into ``staging``, each checked
    again as it is copied; returns (repo, packages, manifest) there."""
    m = checked.manifest
    folder = checked.folder.resolve()
    _clone_bundle(folder / BUNDLE, staging / "repo", m, staging)
    pkg = staging / "packages"
    pkg.mkdir()
    copies = [(f"{WHEELS}/{w['file']}", pkg / w["file"]) for w in m["wheelhouse"]]
    copies += [(e["lock"], pkg / e["lock"]) for e in m["eras"] if e["lock"]]
    copies.append((MANIFEST, staging / MANIFEST))
    for rel, dst in copies:
        digest, _ = _copy_hashed(folder / rel, dst)
        if digest != checked.sums[rel]:  # the stick changed under us, or a bad read
            raise BundleError("changed while it was being copied", path=folder / rel, hint=_AGAIN)
    return staging / "repo", pkg, staging / MANIFEST


def _install(home: Home, db: Database, checked: _Checked) -> ImportedPackage:
    m = checked.manifest
    name = m["name"]
    manifest_sha = checked.sums[MANIFEST]
    info = ImportedPackage(
        name=name,
        head_sha=m["head_sha"],
        kept=len(m["commits"]),
        rejected=len(m["rejected"]),
        eras=len(m["eras"]),
        wheels=len(m["wheelhouse"]),
        status="imported",
    )
    targets = (home.repo_dir(name), home.wheelhouse(name), home.manifest_path(name))
    try:
        known = get_repo(db, name)
    except NotFound:
        known = None
    if (
        known is not None
        and known.manifest_sha256 == manifest_sha
        and all(t.exists() for t in targets)
    ):
        info.status = "unchanged"
        return info

    home.tmp.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{IMPORT_STAGING_PREFIX}{name}-", dir=home.tmp))
    keep_staging = False
    try:
        news = _stage(checked, staging)
        repo, eras, commits = manifest_records(m, source="imported", manifest_sha256=manifest_sha)
        backup = staging / "previous"
        backup.mkdir()
        created = list(dict.fromkeys(p for t in targets for p in _missing_parents(t.parent)))
        journal = _Journal(name, manifest_sha, created=[str(p) for p in created], moves=[
            _Move(str(new), str(target), str(backup / str(i)), target.exists() or target.is_symlink())
            for i, (new, target) in enumerate(zip(news, targets, strict=True))
        ])
        journal.write(staging)
        try:
            info.replaced = journal.apply()
            register_repo(db, repo, eras, commits)  # one transaction: the commit point
        except BaseException as exc:
            try:
                journal.undo()
            except OSError as undo:
                keep_staging = True  # the previous package lives only there now: never delete it
                raise Failed(
                    f"import failed ({exc}) and the previous package could not be put back ({undo})",
                    path=backup,
                    hint="the next 'cra corpus import' tries again; or move the folders back by hand",
                ) from exc
            if isinstance(exc, OSError):
                across = exc.errno == errno.EXDEV  # os.replace cannot cross file systems
                raise Failed(
                    f"cannot move the package into place: {exc}",
                    path=home.root,
                    hint="var/tmp must be on the same file system as corpus/, packages/ and manifests/"
                    if across else "check free space and permissions under CRA_HOME",
                ) from exc
            raise
    finally:
        if not keep_staging:
            shutil.rmtree(staging, ignore_errors=True)
    return info


def import_package(
    home: Home, src: Path, db: Database, progress: Progress | None = None
) -> ImportResult:
    """Import one package folder, or every package folder of a USB root, with no network.

    Every package on the stick is verified before any is installed, so one damaged package
    stops the import before anything changes.
    """
    folders = find_packages(Path(src))
    checked = [verify_package(f, progress) for f in folders]
    seen: dict[str, Path] = {}
    for c in checked:
        name = c.manifest["name"]
        if name in seen:
            raise BundleError(
                f"holds package '{name}' again (also in {seen[name]})",
                path=c.folder,
                hint="keep one copy of each package on the stick",
            )
        seen[name] = c.folder
    with _import_lock(home):
        _recover(home, db)  # what a killed import left, before anything new lands
        return ImportResult(packages=[_install(home, db, c) for c in checked])


# --------------------------------------------------------------------------- appliance


def project_root() -> Path:
    """The source checkout cra runs from (``--with-appliance`` builds cra's wheel from it)."""
    import appliance

    root = Path(appliance.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        name = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        name = None
    if name != "cra":
        raise Failed(
            "cra is not running from its source checkout",
            path=pyproject,
            hint="run 'cra corpus export --with-appliance' from a checkout of cra",
        )
    return root


def appliance_lock(root: Path, extras: Sequence[str] = ()) -> Path:
    """The committed lock for installing ``cra[extras]``: ``packages/appliance[-extras].txt``
    (hash-pinned, written by ``scripts/lock-appliance.sh``)."""
    name = "-".join(("appliance", *sorted(extras))) + ".txt"
    lock = root / "packages" / name
    if not lock.is_file():
        raise Failed(
            f"there is no committed lock for cra[{','.join(extras)}]",
            path=lock,
            hint=f"write it with: scripts/lock-appliance.sh {' '.join(extras)}".rstrip(),
        )
    return lock


def _pip_wheel(cmd: list[str], log: Path, what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_pip_env(), check=False)
    if proc.returncode != 0:
        log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise Failed(f"pip wheel of {what} failed: {lines[-1] if lines else proc.returncode}",
                     hint=f"see {log}")


def export_appliance(
    dest: Path,
    extras: tuple[str, ...] = ("llama",),
    find_links: Sequence[str | Path] = (),
    *,
    no_index: bool = False,
    python: str | None = None,
) -> Path:
    """Write ``dest/appliance/``: wheels of cra and its dependencies, install script, SHA256SUMS.

    The dependencies are exactly those of the committed lock (``appliance_lock``), checked
    against its hashes, so every box gets the versions the tests ran with; cra itself is
    built from this checkout. ``pip wheel`` rather than ``pip download``: dependencies
    published only as sdists (llama-cpp-python) are built into wheels here, so the
    air-gapped box needs no compiler. Connected side only (it asks the package index
    unless ``no_index``).
    """
    root = project_root()
    lock = appliance_lock(root, extras)
    out = Path(dest) / APPLIANCE_DIR
    wheels = out / WHEELS
    wheels.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    log = out / "pip-wheel.log"
    base = [python or sys.executable, "-m", "pip", "wheel", "--wheel-dir", str(build)]
    if no_index:
        base.append("--no-index")
    for fl in find_links:
        base += ["--find-links", str(fl)]
    try:
        _pip_wheel([*base, "--require-hashes", "-r", str(lock)], log, f"the locked dependencies ({lock.name})")
        _pip_wheel([*base, "--no-deps", str(root)], log, "cra")
        log.unlink(missing_ok=True)
        built = {p.name: p for p in build.glob("*.whl")}
        for old in wheels.glob("*.whl"):
            if old.name not in built:
                old.unlink()
        for fname, p in built.items():
            os.replace(p, wheels / fname)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    script = out / INSTALL_SCRIPT
    _copy_hashed(root / "scripts" / INSTALL_SCRIPT, script)
    script.chmod(0o755)
    sums = {INSTALL_SCRIPT: sha256_file(script)}
    sums.update({f"{WHEELS}/{p.name}": sha256_file(p) for p in sorted(wheels.glob("*.whl"))})
    write_atomic(out / SUMS, format_sums(sums), partial_suffix=PARTIAL)
    return out
