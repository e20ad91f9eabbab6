"""USB bundles: export a repo package, import it into a second CRA_HOME with no network.

The package is made by hand from real parts: a real git repository (RepoBuilder) cloned
into corpus/<name>/repo, real installable wheels, a hash-pinned lock, and a manifest from
``build_manifest``; the import side is a second CRA_HOME with its own database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import funnel, get_commits, get_eras, get_repo, register_repo
from appliance.errors import BadInput, BundleError, Failed, ManifestError
from appliance.hashing import sha256_file
from appliance.packaging.bundle import (
    BUNDLE,
    MANIFEST,
    SUMS,
    export_appliance,
    export_package,
    format_sums,
    import_package,
)
from appliance.packaging.manifest import build_manifest, read_manifest, write_manifest
from appliance.records import CommitRecord, EraRecord, FileChange, RepoRecord
from harness.git import git

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- building blocks


def make_wheel(folder: Path, dist: str, version: str, files: dict[str, str] | None = None) -> Path:
    """A real, pip-installable pure-Python wheel (METADATA, WHEEL, RECORD with hashes)."""
    files = files or {f"{dist}/__init__.py": f"__version__ = {version!r}\n"}
    info = f"{dist}-{version}.dist-info"
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: cra-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    contents = {**files, **meta}
    record = []
    for name, text in contents.items():
        digest = (
            base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        )
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in contents.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), text)
        zf.writestr(
            zipfile.ZipInfo(f"{info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0)),
            "\n".join(record) + "\n",
        )
    return path


@dataclass
class Package:
    name: str
    home: Home
    src: RepoBuilder
    head: str
    kept: int
    rejected: int


def make_package(home: Home, db: Database, tmp: Path, name: str = "inkling") -> Package:
    """A complete repo package in ``home``, as ``cra corpus add`` would leave it."""
    src = RepoBuilder(tmp / f"{name}-src")
    src.commit(
        "Initial layout",
        {"pyproject.toml": f"[project]\nname='{name}'\n", "inkling/__init__.py": ""},
    )
    src.commit(
        "Add parse_date for ISO dates",
        {
            "inkling/dates.py": "def parse_date(s):\n    return s.split('-')\n",
            "tests/test_dates.py": "from inkling.dates import parse_date\n\ndef test_parse():\n    assert parse_date('1-2') == ['1', '2']\n",
        },
    )
    src.commit("Bump version", {"inkling/__init__.py": "__version__ = '0.2'\n"})
    src.commit(
        "Reject empty strings in parse_date",
        {
            "inkling/dates.py": "def parse_date(s):\n    if not s:\n        raise ValueError(s)\n    return s.split('-')\n",
            "tests/test_dates.py": "import pytest\nfrom inkling.dates import parse_date\n\ndef test_empty():\n    with pytest.raises(ValueError):\n        parse_date('')\n",
        },
    )
    src.git("tag", "v0.2")
    repo_dir = home.repo_dir(name)
    repo_dir.parent.mkdir(parents=True, exist_ok=True)
    git(None, "clone", "--quiet", "--no-local", str(src.path), str(repo_dir))

    wheelhouse = home.wheelhouse(name)
    wheels = [make_wheel(wheelhouse, "tinydep", "1.0"), make_wheel(wheelhouse, "tinytest", "2.1")]
    era_key = hashlib.sha256(f"{name}: tinydep==1.0".encode()).hexdigest()
    lock = home.locks_dir(name) / f"{era_key[:12]}.txt"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(
        "".join(
            f"{w.name.split('-')[0]}=={w.name.split('-')[1]} \\\n    --hash=sha256:{sha256_file(w)}\n"
            for w in wheels
        )
    )
    dead_key = hashlib.sha256(f"{name}: nosuch==9".encode()).hexdigest()

    log = git(
        repo_dir,
        "log",
        "--first-parent",
        "--reverse",
        "--format=%H%x00%P%x00%aI%x00%at%x00%s%x00%B%x01",
    )
    commits = []
    for chunk in log.split("\x01"):
        if not chunk.strip():
            continue
        sha, parents, date, ts, title, body = chunk.strip("\n").split("\x00")
        commits.append(
            CommitRecord(
                sha=sha,
                parent=parents.split()[0] if parents else None,
                author_date=date,
                author_ts=int(ts),
                title=title,
                message=body.strip(),
                files=[
                    FileChange("inkling/dates.py", 2, 0, "source"),
                    FileChange("tests/test_dates.py", 4, 0, "test"),
                ],
                symbols={"inkling/dates.py": ["parse_date"]},
                scores={"message": 0.8},
            )
        )
    commits[0].reject("tests", "no test file changed")
    commits[2].reject("message", "version bump")
    commits[1].era_key = era_key
    commits[3].era_key = dead_key
    eras = [
        EraRecord(
            key=era_key,
            requirements=["tinydep==1.0"],
            build_requires=["setuptools>=40.8.0"],
            first_commit=commits[1].sha,
            commits=[commits[1].sha],
            lock_path=f"locks/{lock.name}",
            lock_sha256=sha256_file(lock),
            status="locked",
        ),
        EraRecord(
            key=dead_key,
            requirements=["nosuch==9"],
            build_requires=["setuptools>=40.8.0"],
            first_commit=commits[3].sha,
            commits=[commits[3].sha],
            status="unresolvable",
            error="no matching distribution for nosuch==9",
        ),
    ]
    repo = RepoRecord(
        name=name,
        origin_url=f"https://example.invalid/{name}.git",
        head_sha=src.head(),
        default_branch="main",
        python_version="3.11",
        test_cmd="python -m pytest",
    )
    inventory = [
        {"file": w.name, "sha256": sha256_file(w), "size": w.stat().st_size} for w in wheels
    ]
    repo.manifest_sha256 = write_manifest(
        home.manifest_path(name), build_manifest(repo, eras, commits, inventory)
    )
    register_repo(db, repo, eras, commits)
    return Package(name=name, home=home, src=src, head=src.head(), kept=2, rejected=2)


@pytest.fixture
def pkg(home: Home, db: Database, tmp_path: Path) -> Package:
    return make_package(home, db, tmp_path)


@pytest.fixture
def target(tmp_path: Path):
    """The air-gapped side: a second CRA_HOME with its own database."""
    root = tmp_path / "airgapped"
    root.mkdir()
    database = Database(Home(root).db_path)
    yield Home(root), database
    database.close()


def resign(folder: Path) -> None:
    """Recompute SHA256SUMS after a deliberate edit, so only the later checks can catch it."""
    sums = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in folder.rglob("*")
        if p.is_file() and p.name != SUMS
    }
    (folder / SUMS).write_bytes(format_sums(sums))


def assert_nothing_imported(home: Home, db: Database, name: str) -> None:
    assert db.query("SELECT * FROM repos") == []
    assert db.query("SELECT * FROM commits") == []
    assert db.query("SELECT * FROM eras") == []
    assert not (home.corpus / name).exists()
    assert not home.wheelhouse(name).exists()
    assert not home.manifest_path(name).exists()
    assert not home.tmp.exists() or list(home.tmp.iterdir()) == []


def network_free_python() -> list[str]:
    """A command prefix that runs Python in a new network namespace (nothing but loopback)."""
    if not shutil.which("unshare"):
        pytest.skip("unshare(1) is not installed: cannot cut the network for the import")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"unshare -rn is not allowed here: {probe.stderr.decode().strip()}")
    return ["unshare", "-rn", sys.executable]


# --------------------------------------------------------------------------- export


def test_export_writes_bundle_wheels_locks_manifest_and_sums(pkg: Package, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    result = export_package(pkg.home, pkg.name, usb)
    folder = usb / pkg.name
    assert result.path == folder
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    lock = next(pkg.home.locks_dir(pkg.name).iterdir()).name
    assert files == sorted(
        [
            SUMS,
            BUNDLE,
            MANIFEST,
            f"locks/{lock}",
            "wheels/tinydep-1.0-py3-none-any.whl",
            "wheels/tinytest-2.1-py3-none-any.whl",
        ]
    )
    assert result.written == len(files) and result.skipped == 0
    assert (folder / MANIFEST).read_bytes() == pkg.home.manifest_path(pkg.name).read_bytes()
    listed = {line.split("  ", 1)[1] for line in (folder / SUMS).read_text().splitlines()}
    assert listed == set(files) - {SUMS}
    if shutil.which("sha256sum"):  # the stick can be checked with standard tools too
        subprocess.run(
            ["sha256sum", "--check", "--quiet", "--strict", SUMS], cwd=folder, check=True
        )
    heads = git(pkg.home.repo_dir(pkg.name), "bundle", "list-heads", str(folder / BUNDLE))
    assert f"{pkg.head} refs/heads/main" in heads and "refs/tags/v0.2" in heads


def test_reexport_skips_files_already_there(pkg: Package, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    stamps = {p: p.stat().st_mtime_ns for p in (usb / pkg.name).rglob("*") if p.is_file()}
    calls: list[tuple[int, int]] = []
    again = export_package(pkg.home, pkg.name, usb, progress=lambda d, t: calls.append((d, t)))
    assert again.written == 0
    assert again.skipped == len(stamps)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert calls[-1][0] == calls[-1][1] > 0


def test_reexport_repairs_a_damaged_file_and_drops_stale_ones(pkg: Package, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    wheel = usb / pkg.name / "wheels" / "tinydep-1.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes()[:-10])
    stale = make_wheel(usb / pkg.name / "wheels", "tinydep", "0.9")
    again = export_package(pkg.home, pkg.name, usb)
    assert again.written_files == ["wheels/tinydep-1.0-py3-none-any.whl", SUMS]
    assert again.removed_files == [f"wheels/{stale.name}"]
    assert sha256_file(wheel) == sha256_file(pkg.home.wheelhouse(pkg.name) / wheel.name)


def test_export_refuses_a_folder_that_is_not_an_export(pkg: Package, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    (usb / pkg.name).mkdir(parents=True)
    (usb / pkg.name / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(BadInput, match="is not an export of 'inkling'"):
        export_package(pkg.home, pkg.name, usb)
    assert [p.name for p in (usb / pkg.name).iterdir()] == ["holiday.jpg"]


def test_export_refuses_a_damaged_local_wheel(pkg: Package, tmp_path: Path) -> None:
    wheel = pkg.home.wheelhouse(pkg.name) / "tinytest-2.1-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"junk")
    with pytest.raises(
        BadInput, match=r"tinytest-2\.1-py3-none-any\.whl: does not match the sha256"
    ):
        export_package(pkg.home, pkg.name, tmp_path / "usb")
    assert not (tmp_path / "usb" / pkg.name / "wheels" / wheel.name).exists()
    assert not (tmp_path / "usb" / pkg.name / SUMS).exists()


def test_interrupted_export_is_never_taken_for_a_complete_one(
    pkg: Package, tmp_path: Path, target
) -> None:
    usb = tmp_path / "usb"

    def pull_the_stick(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_package(pkg.home, pkg.name, usb, progress=pull_the_stick)
    assert not (usb / pkg.name / SUMS).exists()
    assert not [p for p in (usb / pkg.name).rglob("*.cra-partial")]
    home2, db2 = target
    with pytest.raises(BundleError, match=r"inkling/SHA256SUMS: is missing"):
        import_package(home2, usb, db2)
    assert_nothing_imported(home2, db2, pkg.name)
    resumed = export_package(pkg.home, pkg.name, usb)
    assert resumed.skipped == 2  # the two files written before the interruption
    assert import_package(home2, usb, db2).names == [pkg.name]


# --------------------------------------------------------------------------- import


IMPORT_SCRIPT = """
import json, socket, sys
from pathlib import Path
from appliance.packaging.bundle import import_package
from appliance.config import Home
from appliance.db.core import Database
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3).close()
    network = True
except OSError:
    network = False
home = Home(Path(sys.argv[1]))
db = Database(home.db_path)
result = import_package(home, Path(sys.argv[2]), db)
print(json.dumps({"network": network, "packages": [p.__dict__ for p in result.packages]}))
"""


def test_round_trip_import_into_a_second_home_without_network(
    pkg: Package, tmp_path: Path, target
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    home2, db2 = target
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", PYTHONPATH=str(ROOT)
    )
    proc = subprocess.run(
        [*network_free_python(), "-c", IMPORT_SCRIPT, str(home2.root), str(usb)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["network"] is False  # the import really ran with no network
    [info] = out["packages"]
    assert info | {"replaced": False} == {
        "name": pkg.name,
        "head_sha": pkg.head,
        "kept": 2,
        "rejected": 2,
        "eras": 2,
        "wheels": 2,
        "status": "imported",
        "replaced": False,
    }

    repo = get_repo(db2, pkg.name)
    assert (repo.source, repo.head_sha) == ("imported", pkg.head)
    assert repo.manifest_sha256 == sha256_file(pkg.home.manifest_path(pkg.name))
    assert [c.sha for c in get_commits(db2, pkg.name)] == [
        c.sha for c in get_commits(Database(pkg.home.db_path), pkg.name)
    ]
    assert funnel(db2, pkg.name)["kept"] == 2
    eras = get_eras(db2, pkg.name)
    assert [e.status for e in eras] == ["locked", "unresolvable"]
    assert (home2.wheelhouse(pkg.name) / eras[0].lock_path).read_text() == (
        pkg.home.wheelhouse(pkg.name) / eras[0].lock_path
    ).read_text()

    clone = home2.repo_dir(pkg.name)
    assert git(clone, "rev-parse", "HEAD").strip() == pkg.head
    assert git(clone, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert git(clone, "rev-list", "--count", "HEAD").strip() == "4"
    assert git(clone, "tag").split() == ["v0.2"]
    assert (
        git(clone, "remote", "get-url", "origin").strip()
        == f"https://example.invalid/{pkg.name}.git"
    )
    assert git(clone, "status", "--porcelain") == ""
    for wheel in pkg.home.wheelhouse(pkg.name).glob("*.whl"):
        assert sha256_file(home2.wheelhouse(pkg.name) / wheel.name) == sha256_file(wheel)
    assert (
        home2.manifest_path(pkg.name).read_bytes() == pkg.home.manifest_path(pkg.name).read_bytes()
    )
    read_manifest(home2.manifest_path(pkg.name))
    assert list(home2.tmp.iterdir()) == []


def test_import_again_is_unchanged_and_a_new_export_replaces(
    pkg: Package, tmp_path: Path, db, target
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    home2, db2 = target
    assert import_package(home2, usb / pkg.name, db2).packages[0].status == "imported"
    assert import_package(home2, usb / pkg.name, db2).packages[0].status == "unchanged"

    # The connected side moves on: a new commit, a new manifest, a new export.
    new_head = pkg.src.commit(
        "Accept slashes in parse_date", {"inkling/dates.py": "def parse_date(s):\n    return s\n"}
    )
    clone = pkg.home.repo_dir(pkg.name)
    git(clone, "pull", "--quiet", "--ff-only")
    manifest = read_manifest(pkg.home.manifest_path(pkg.name))
    last = dict(manifest["commits"][-1], sha=new_head, parent=manifest["head_sha"], era_key=None)
    manifest.update(head_sha=new_head, commits=[*manifest["commits"], last])
    write_manifest(pkg.home.manifest_path(pkg.name), manifest)
    again = export_package(pkg.home, pkg.name, usb)
    assert set(again.written_files) == {BUNDLE, MANIFEST, SUMS}

    info = import_package(home2, usb, db2).packages[0]
    assert (info.status, info.replaced, info.kept) == ("imported", True, 3)
    assert git(home2.repo_dir(pkg.name), "rev-parse", "HEAD").strip() == new_head
    assert get_repo(db2, pkg.name).head_sha == new_head
    assert len(get_commits(db2, pkg.name)) == 5


def test_a_usb_root_with_several_packages_and_the_appliance_folder(
    pkg: Package, home: Home, db: Database, tmp_path: Path, target
) -> None:
    other = make_package(home, db, tmp_path, name="quill")
    usb = tmp_path / "usb"
    export_package(home, pkg.name, usb)
    export_package(home, other.name, usb)
    (usb / "appliance").mkdir()
    (usb / "appliance" / "install-offline.sh").write_text("#!/bin/sh\n")
    (usb / "notes").mkdir()  # unrelated folders on the stick are left alone
    home2, db2 = target
    assert import_package(home2, usb, db2).names == ["inkling", "quill"]
    assert sorted(r["name"] for r in db2.query("SELECT name FROM repos")) == ["inkling", "quill"]


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "victim", "says"),
    [
        (_flip_byte, "wheels/tinydep-1.0-py3-none-any.whl", "does not match its checksum"),
        (_flip_byte, MANIFEST, "does not match its checksum"),
        (_truncate, BUNDLE, "does not match its checksum"),
        (_truncate, "locks/*.txt", "does not match its checksum"),
        (
            Path.unlink,
            "wheels/tinytest-2.1-py3-none-any.whl",
            "is listed in SHA256SUMS but missing",
        ),
        (Path.unlink, BUNDLE, "is listed in SHA256SUMS but missing"),
        (Path.unlink, SUMS, "is missing"),
        (lambda p: p.write_text("not a checksum line\n"), SUMS, "line 1 is not"),
    ],
    ids=[
        "flipped-wheel",
        "flipped-manifest",
        "truncated-bundle",
        "truncated-lock",
        "missing-wheel",
        "missing-bundle",
        "missing-sums",
        "garbled-sums",
    ],
)
def test_damaged_bundles_are_refused_before_anything_changes(
    pkg: Package, tmp_path: Path, target, damage, victim: str, says: str
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    folder = usb / pkg.name
    path = next(folder.glob(victim))
    damage(path)
    home2, db2 = target
    with pytest.raises(BundleError) as info:
        import_package(home2, usb, db2)
    assert str(path) in str(info.value) and says in str(info.value)
    assert info.value.exit_code == 2
    assert_nothing_imported(home2, db2, pkg.name)


def test_an_extra_file_in_the_bundle_is_refused(pkg: Package, tmp_path: Path, target) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    sneaky = usb / pkg.name / "wheels" / "evil-6.6-py3-none-any.whl"
    make_wheel(sneaky.parent, "evil", "6.6")
    home2, db2 = target
    with pytest.raises(
        BundleError, match=r"evil-6\.6-py3-none-any\.whl: is not listed in SHA256SUMS"
    ):
        import_package(home2, usb, db2)
    # Listed, but not part of the manifest's wheelhouse: still refused.
    resign(usb / pkg.name)
    with pytest.raises(
        BundleError, match=r"evil-6\.6-py3-none-any\.whl: is not part of the package"
    ):
        import_package(home2, usb, db2)
    assert_nothing_imported(home2, db2, pkg.name)


def test_a_symlink_in_the_bundle_is_refused(pkg: Package, tmp_path: Path, target) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    (usb / pkg.name / "locks" / "passwd").symlink_to("/etc/passwd")
    home2, db2 = target
    with pytest.raises(BundleError, match=r"locks/passwd: is a symbolic link"):
        import_package(home2, usb, db2)
    assert_nothing_imported(home2, db2, pkg.name)


def test_a_manifest_that_breaks_the_schema_is_refused_with_its_pointer(
    pkg: Package, tmp_path: Path, target
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    path = usb / pkg.name / MANIFEST
    doc = json.loads(path.read_text())
    doc["commits"][1]["sha"] = "zz"
    path.write_text(json.dumps(doc))
    resign(usb / pkg.name)  # checksums agree: only the schema can catch it
    home2, db2 = target
    with pytest.raises(
        ManifestError, match=r"inkling/manifest\.json: /commits/1/sha: 'zz' does not match"
    ):
        import_package(home2, usb, db2)
    assert_nothing_imported(home2, db2, pkg.name)


def test_a_manifest_that_disagrees_with_the_files_is_refused(
    pkg: Package, tmp_path: Path, target
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    path = usb / pkg.name / MANIFEST
    doc = json.loads(path.read_text())
    doc["wheelhouse"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(doc))
    resign(usb / pkg.name)
    home2, db2 = target
    with pytest.raises(
        BundleError, match=r"wheels/tinydep-1\.0-py3-none-any\.whl: differs from the sha256"
    ):
        import_package(home2, usb, db2)
    assert_nothing_imported(home2, db2, pkg.name)


def test_a_bundle_whose_head_is_not_the_manifests_is_refused(
    pkg: Package, tmp_path: Path, target
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    path = usb / pkg.name / MANIFEST
    doc = json.loads(path.read_text())
    doc["head_sha"] = doc["commits"][0]["sha"]
    path.write_text(json.dumps(doc))
    resign(usb / pkg.name)
    home2, db2 = target
    with pytest.raises(
        BundleError, match=r"repo\.bundle: its HEAD is [0-9a-f]{12} but manifest\.json says"
    ):
        import_package(home2, usb, db2)
    assert_nothing_imported(home2, db2, pkg.name)


def test_a_bundle_of_another_repo_is_refused(
    pkg: Package, home: Home, db: Database, tmp_path: Path, target
) -> None:
    other = make_package(home, db, tmp_path, name="quill")
    usb = tmp_path / "usb"
    export_package(home, pkg.name, usb)
    export_package(home, other.name, usb)
    shutil.copyfile(usb / other.name / BUNDLE, usb / pkg.name / BUNDLE)
    resign(usb / pkg.name)
    home2, db2 = target
    with pytest.raises(BundleError, match=r"inkling/repo\.bundle: its HEAD is"):
        import_package(home2, usb / pkg.name, db2)
    assert_nothing_imported(home2, db2, pkg.name)


def test_one_bad_package_on_the_stick_stops_all_of_them(
    pkg: Package, home: Home, db: Database, tmp_path: Path, target
) -> None:
    other = make_package(home, db, tmp_path, name="quill")
    usb = tmp_path / "usb"
    export_package(home, pkg.name, usb)
    export_package(home, other.name, usb)
    _flip_byte(usb / other.name / BUNDLE)
    home2, db2 = target
    with pytest.raises(BundleError, match=r"quill/repo\.bundle"):
        import_package(home2, usb, db2)
    assert_nothing_imported(home2, db2, pkg.name)


def test_a_failure_while_moving_into_place_rolls_everything_back(
    pkg: Package, tmp_path: Path, target
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    home2, db2 = target
    home2.packages.write_text("a file where the packages folder should be")
    with pytest.raises(Failed, match="cannot move the package into place"):
        import_package(home2, usb, db2)
    assert db2.query("SELECT * FROM repos") == []
    assert not (home2.corpus / pkg.name).exists()
    assert not home2.manifest_path(pkg.name).exists()
    assert list(home2.tmp.iterdir()) == []


def test_a_failed_reimport_keeps_the_previous_package(pkg: Package, tmp_path: Path, target) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    home2, db2 = target
    import_package(home2, usb, db2)
    before = {p: p.read_bytes() for p in home2.wheelhouse(pkg.name).rglob("*") if p.is_file()}
    path = usb / pkg.name / MANIFEST
    doc = json.loads(path.read_text())
    doc["head_sha"] = doc["commits"][0]["sha"]
    path.write_text(json.dumps(doc))
    resign(usb / pkg.name)
    with pytest.raises(BundleError):
        import_package(home2, usb, db2)
    assert get_repo(db2, pkg.name).head_sha == pkg.head
    assert git(home2.repo_dir(pkg.name), "rev-parse", "HEAD").strip() == pkg.head
    assert {
        p: p.read_bytes() for p in home2.wheelhouse(pkg.name).rglob("*") if p.is_file()
    } == before


def test_a_folder_without_packages_is_a_bundle_error(tmp_path: Path, target) -> None:
    home2, db2 = target
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="holds no repo package"):
        import_package(home2, tmp_path / "empty", db2)


# --------------------------------------------------------------------------- the appliance itself


def _appliance_folder(tmp_path: Path, version: str = "0.0.1") -> Path:
    folder = tmp_path / "appliance"
    wheel = make_wheel(
        folder / "wheels", "cra", version, {"appliance/__init__.py": f"VERSION = {version!r}\n"}
    )
    shutil.copyfile(ROOT / "scripts" / "install-offline.sh", folder / "install-offline.sh")
    (folder / SUMS).write_bytes(
        format_sums(
            {
                "install-offline.sh": sha256_file(folder / "install-offline.sh"),
                f"wheels/{wheel.name}": sha256_file(wheel),
            }
        )
    )
    return folder


def _run_install(
    folder: Path, venv: Path, env_extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    prefix = network_free_python()[:-1]  # unshare -rn
    env = dict(os.environ, CRA_EXTRAS="", PYTHON=sys.executable, **env_extra)
    return subprocess.run(
        [*prefix, "sh", str(folder / "install-offline.sh"), str(venv)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.mark.slow
def test_install_offline_script_uses_only_its_own_wheels(tmp_path: Path) -> None:
    folder = _appliance_folder(tmp_path)
    decoy = tmp_path / "decoy"
    make_wheel(decoy, "cra", "9.9", {"appliance/__init__.py": "VERSION = '9.9'\n"})
    venv = tmp_path / "venv"
    # A machine-wide PIP_FIND_LINKS with a newer cra must not leak into the install.
    proc = _run_install(folder, venv, {"PIP_FIND_LINKS": str(decoy)})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    got = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", "import appliance; print(appliance.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert got.stdout.strip() == "0.0.1"


def test_install_offline_script_refuses_a_damaged_wheelhouse(tmp_path: Path) -> None:
    folder = _appliance_folder(tmp_path)
    _flip_byte(next((folder / "wheels").glob("*.whl")))
    proc = _run_install(folder, tmp_path / "venv", {})
    assert proc.returncode == 2
    assert "does not match SHA256SUMS" in proc.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.network
@pytest.mark.slow
def test_export_appliance_installs_cra_with_no_network_and_its_demo_runs(tmp_path: Path, wheel_cache: Path) -> None:
    out = export_appliance(tmp_path / "usb", extras=())
    assert out == tmp_path / "usb" / "appliance"
    [cra_wheel] = [p for p in (out / "wheels").glob("*.whl") if p.name.startswith("cra-")]
    with zipfile.ZipFile(cra_wheel) as zf:  # everything a command needs ships in the wheel
        names = set(zf.namelist())
    assert {"appliance/data/inkwell.bundle", "appliance/data/catalog.toml",
            "appliance/schemas/manifest.schema.json", "appliance/schemas/swebench_instance.schema.json",
            "appliance/schemas/recipe.schema.json", "appliance/data/adapters/plan.toml",
            "appliance/data/adapters/execute-code.toml"} <= names
    subprocess.run(["sha256sum", "--check", "--quiet", SUMS], cwd=out, check=True)
    venv = tmp_path / "venv"
    proc = _run_install(out, venv, {})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", "import appliance.packaging.bundle, harness.git"],
        check=True,
        cwd=tmp_path,
    )
    # cra demo from the installed wheel, far from any checkout, with no network at all.
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(CRA_HOME=str(home), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    prefix = network_free_python()[:-1]
    # The packaging half of the demo: the loop needs the llama and train extras, not installed here.
    demo = subprocess.run([*prefix, str(venv / "bin" / "cra"), "demo", "--wheels", str(wheel_cache), "--package-only"],
                          capture_output=True, text=True, env=env, cwd=home, check=False)
    assert demo.returncode == 0, demo.stderr[-3000:] + demo.stdout[-3000:]
    assert "inkwell: commit funnel" in demo.stdout and f"cra --home {home / 'demo' / 'airgapped'}" in demo.stdout
    listed = subprocess.run([str(venv / "bin" / "cra"), "corpus", "catalog", "--json"], capture_output=True,
                            text=True, env=env, cwd=home, check=True)
    assert any(e["name"] == "attrs" for e in json.loads(listed.stdout))


def _pins(lock: Path) -> dict[str, int]:
    """{name: number of hashes} of a hash-pinned requirements file."""
    import re

    from packaging.utils import canonicalize_name

    pins: dict[str, int] = {}
    current = None
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==[^ ;\\]+", line)
        if m:
            current = str(canonicalize_name(m.group(1)))
            pins.setdefault(current, 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            pins[current] += 1
    return pins


def test_the_committed_appliance_locks_cover_cras_dependencies(tmp_path: Path) -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from appliance.packaging.bundle import appliance_lock

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda reqs: {str(canonicalize_name(Requirement(r).name)) for r in reqs}
    core = appliance_lock(ROOT)
    llama = appliance_lock(ROOT, ("llama",))
    assert (core.name, llama.name) == ("appliance.txt", "appliance-llama.txt")
    for lock, wanted in ((core, names(project["dependencies"])),
                         (llama, names(project["dependencies"]) | names(project["optional-dependencies"]["llama"]))):
        pins = _pins(lock)
        assert wanted <= set(pins), f"{lock.name} lacks {sorted(wanted - set(pins))}: run scripts/lock-appliance.sh"
        assert all(n >= 1 for n in pins.values()), f"{lock.name}: a pin without a hash"
    with pytest.raises(Failed, match="no committed lock for cra\\[gpu\\]") as info:
        appliance_lock(ROOT, ("gpu",))
    assert "scripts/lock-appliance.sh gpu" in str(info.value)


def test_the_import_git_config_refuses_every_network_transport(tmp_path: Path) -> None:
    from appliance.errors import GitError
    from appliance.packaging.bundle import OFFLINE_GIT

    for url in (
        "https://example.invalid/x.git",
        "ssh://example.invalid/x.git",
        "git://example.invalid/x",
    ):
        with pytest.raises(GitError, match="not allowed"):
            git(None, *OFFLINE_GIT, "clone", "--quiet", url, str(tmp_path / "x"))


# --------------------------------------------------------------------------- kill -9 during import


def _import_killed(home: Home, usb: Path, *, at: str, nth: int = 1) -> int:
    """``import_package`` in a forked child that SIGKILLs itself at one point; its exit code.

    ``at``: "copy" (the nth file copied into staging), "move" (right after the nth item is
    moved into the home), "cleanup" (after the DB commit, as staging is removed).
    """
    import multiprocessing
    import signal

    def child() -> None:
        from appliance.packaging import bundle

        count = [0]

        def die_on_nth() -> None:
            count[0] += 1
            if count[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

        if at == "copy":
            real_copy = bundle._copy_hashed

            def copy(src: Path, dst: Path):
                die_on_nth()
                return real_copy(src, dst)

            bundle._copy_hashed = copy
        elif at == "move":
            real_replace = os.replace
            homes = (str(home.corpus), str(home.packages), str(home.manifests))

            def replace(src, dst) -> None:
                real_replace(src, dst)
                if str(dst).startswith(homes) and "import-" in str(src):
                    die_on_nth()

            os.replace = replace
        elif at == "cleanup":
            real_rmtree = shutil.rmtree

            def rmtree(path, *args, **kwargs) -> None:
                if Path(path).name.startswith("import-"):
                    die_on_nth()
                real_rmtree(path, *args, **kwargs)

            bundle.shutil.rmtree = rmtree
        with Database(home.db_path) as db:
            import_package(home, usb, db)
        os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    return proc.exitcode


def _advance(pkg: Package, usb: Path) -> str:
    """The connected side moves on: a new commit, a new manifest, a new export; its head."""
    new_head = pkg.src.commit("Accept slashes in parse_date", {"inkling/dates.py": "def parse_date(s):\n    return s\n"})
    git(pkg.home.repo_dir(pkg.name), "pull", "--quiet", "--ff-only")
    manifest = read_manifest(pkg.home.manifest_path(pkg.name))
    last = dict(manifest["commits"][-1], sha=new_head, parent=manifest["head_sha"], era_key=None)
    manifest.update(head_sha=new_head, commits=[*manifest["commits"], last])
    write_manifest(pkg.home.manifest_path(pkg.name), manifest)
    export_package(pkg.home, pkg.name, usb)
    return new_head


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_an_import_killed_while_moving_in_leaves_nothing_the_db_does_not_know(
    pkg: Package, tmp_path: Path, target, nth: int, monkeypatch, capsys
) -> None:
    from appliance.cli import main

    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    home2, db2 = target
    assert _import_killed(home2, usb, at="move", nth=nth) == -9
    # What the kill left: items in place the DB has no row for, and a staging folder.
    assert db2.query("SELECT * FROM repos") == [] and home2.repo_dir(pkg.name).exists()
    assert len(home2.import_stagings()) == 1
    # The next command that opens the DB (here a listing) undoes it.
    monkeypatch.setenv("CRA_HOME", str(home2.root))
    assert main(["corpus", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
    assert_nothing_imported(home2, db2, pkg.name)
    info = import_package(home2, usb, db2).packages[0]
    assert (info.status, info.replaced) == ("imported", False)
    assert get_repo(db2, pkg.name).head_sha == pkg.head and list(home2.tmp.iterdir()) == []


def test_a_reimport_killed_after_the_moves_puts_the_previous_package_back(
    pkg: Package, tmp_path: Path, target
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    home2, db2 = target
    import_package(home2, usb, db2)
    old_manifest = home2.manifest_path(pkg.name).read_bytes()
    new_head = _advance(pkg, usb)
    assert _import_killed(home2, usb, at="move", nth=3) == -9  # all three moved in, no DB row
    assert git(home2.repo_dir(pkg.name), "rev-parse", "HEAD").strip() == new_head
    # The next import undoes the killed one first, then imports the new package whole.
    from appliance.packaging.bundle import recover_imports

    assert len(recover_imports(home2, db2)) == 1
    assert git(home2.repo_dir(pkg.name), "rev-parse", "HEAD").strip() == pkg.head
    assert home2.manifest_path(pkg.name).read_bytes() == old_manifest
    assert get_repo(db2, pkg.name).head_sha == pkg.head and home2.import_stagings() == []
    info = import_package(home2, usb, db2).packages[0]
    assert (info.status, info.replaced) == ("imported", True)
    assert get_repo(db2, pkg.name).head_sha == new_head == git(
        home2.repo_dir(pkg.name), "rev-parse", "HEAD").strip()


def test_an_import_killed_while_copying_leaves_a_staging_folder_the_next_one_clears(
    pkg: Package, tmp_path: Path, target
) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    home2, db2 = target
    assert _import_killed(home2, usb, at="copy", nth=2) == -9
    [stale] = home2.import_stagings()
    assert (stale / "repo").is_dir() and not home2.repo_dir(pkg.name).exists()
    assert import_package(home2, usb, db2).packages[0].status == "imported"
    assert not stale.exists() and list(home2.tmp.iterdir()) == []


def test_an_import_killed_after_its_db_commit_is_kept(pkg: Package, tmp_path: Path, target) -> None:
    usb = tmp_path / "usb"
    export_package(pkg.home, pkg.name, usb)
    home2, db2 = target
    assert _import_killed(home2, usb, at="cleanup") == -9
    assert get_repo(db2, pkg.name).head_sha == pkg.head and len(home2.import_stagings()) == 1
    from appliance.packaging.bundle import recover_imports

    recover_imports(home2, db2)
    assert home2.import_stagings() == [] and home2.repo_dir(pkg.name).is_dir()
    assert git(home2.repo_dir(pkg.name), "rev-parse", "HEAD").strip() == pkg.head
    assert import_package(home2, usb, db2).packages[0].status == "unchanged"
