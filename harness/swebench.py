"""SWE-bench-format task instances: cra's tasks out, other people's instances checked in.

Out (``export_instances``): one JSON object per task with the fields of
``princeton-nlp/SWE-bench`` that the SWE-bench harness, SWE-agent and mini-swe-agent read,
in that dataset's order and types (``FAIL_TO_PASS`` / ``PASS_TO_PASS`` are JSON-encoded
lists, as published). cra has no issues or pull requests, so the mapping is:

=========================  ======================================================
``instance_id``            ``owner__name-<commit sha, 12 digits>``
``repo``                   ``owner/name`` from the package's origin URL
``base_commit``            the commit's parent
``patch``                  the gold patch (the commit's source changes)
``test_patch``             the commit's changes to test files
``problem_statement``      the commit message (a merge: its pull request title)
``hints_text``             empty
``created_at``             the commit's author date
``version``                the dependency era's key, 12 digits (one environment each)
``environment_setup_commit``  the era's first commit
=========================  ======================================================

In (``check_instances``): SWE-bench-format instances from elsewhere, for a repo cra has
packaged, each validated with cra's own oracle (``harness.validation.validate_commit``:
the same sandbox, the same before/after runs) and compared with the FAIL_TO_PASS the
instance claims: ``same``, ``subset`` (cra finds fewer), ``superset`` (cra finds more),
``different``, or ``unchecked`` when cra could not judge it (the patch does not apply,
the environment failed), each with the reason. A cross-check of cra's oracle against other
people's, offline: the instance's patches are applied to its base commit in the package's
clone (a commit object of cra's own, never a branch), nothing is fetched.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from jsonschema.exceptions import best_match

from appliance.atomic import write_atomic
from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import get_commits, get_eras, get_repo, list_repos
from appliance.db.tasks import TaskRecord, list_tasks
from appliance.errors import BadInput, CraError, GitError, NotFound
from appliance.records import CommitRecord, EraRecord, FileChange
from appliance.status import TaskStatus
from harness.git import git
from harness.testrun import patch_paths
from harness.validation import ValidationOptions, free_slot, validate_commit

INSTANCE_FIELDS = (
    "repo", "instance_id", "base_commit", "patch", "test_patch", "problem_statement", "hints_text",
    "created_at", "version", "FAIL_TO_PASS", "PASS_TO_PASS", "environment_setup_commit",
)
"""The fields of ``princeton-nlp/SWE-bench``, in its order."""

SCHEMA_RESOURCE = ("schemas", "swebench_instance.schema.json")


# ----------------------------------------------------------------------------- out


def repo_slug(origin_url: str, name: str) -> str:
    """``owner/name`` of a package's origin (``https://host/owner/name.git``, ``git@host:owner/name``);
    ``local/<package>`` when the origin is a path with no owner to name."""
    url = origin_url.strip()
    if "://" not in url and ":" in url.split("/", 1)[0]:  # scp-like git@host:owner/name
        url = "ssh://" + url.replace(":", "/", 1)
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme in ("http", "https", "ssh", "git") and parts.hostname and len(path) >= 2:
        owner, repo = path[-2], path[-1].removesuffix(".git")
        return f"{owner}/{repo}"
    return f"local/{name}"


def instance_id(slug: str, sha: str) -> str:
    return f"{slug.replace('/', '__')}-{sha[:12]}"


def to_instance(task: TaskRecord, slug: str, commit: CommitRecord | None, era: EraRecord | None) -> dict[str, Any]:
    """One task as a SWE-bench instance (fields in ``INSTANCE_FIELDS`` order)."""
    assert task.parent is not None, "a task always has a parent"
    row = {
        "repo": slug,
        "instance_id": instance_id(slug, task.sha),
        "base_commit": task.parent,
        "patch": task.gold_patch,
        "test_patch": task.test_patch,
        "problem_statement": task.instruction,
        "hints_text": "",
        "created_at": commit.author_date if commit else "",
        "version": era.key[:12] if era else "",
        "FAIL_TO_PASS": json.dumps(task.fail_to_pass),
        "PASS_TO_PASS": json.dumps(task.pass_to_pass),
        "environment_setup_commit": era.first_commit if era else task.parent,
    }
    return {k: row[k] for k in INSTANCE_FIELDS}


def export_instances(db: Database, name: str, *, status: str = TaskStatus.VALID) -> list[dict[str, Any]]:
    """The tasks of ``name`` with ``status`` (valid by default) as SWE-bench instances, oldest first."""
    repo = get_repo(db, name)
    slug = repo_slug(repo.origin_url, name)
    commits = {c.sha: c for c in get_commits(db, name)}
    eras = {e.key: e for e in get_eras(db, name)}
    out = []
    for task in list_tasks(db, name, status=status):
        if task.parent is None:
            continue
        commit = commits.get(task.sha)
        era = eras.get(commit.era_key) if commit and commit.era_key else None
        out.append(to_instance(task, slug, commit, era))
    return out


def instances_jsonl(rows: list[dict[str, Any]]) -> str:
    """JSONL text. JSON holds text only: in a patch of a file that is not UTF-8 the bytes
    that do not decode become U+FFFD, as in the ``tasks`` TEXT columns (the exact bytes stay
    in the DB's ``*_bytes`` columns)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def write_instances(path: Path | str, rows: list[dict[str, Any]]) -> Path:
    path = Path(path)
    if path.is_dir():
        raise BadInput("is a folder", path=path, hint="name a file, e.g. --out tasks.jsonl")
    write_atomic(path, instances_jsonl(rows))
    return path


# ----------------------------------------------------------------------------- in


@dataclass
class Instance:
    """One SWE-bench instance read from a file (``line``: where, for messages)."""

    instance_id: str
    repo: str
    base_commit: str
    patch: str
    test_patch: str
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    problem_statement: str = ""
    line: int = 0


@lru_cache(maxsize=1)
def _validator() -> Any:
    schema = json.loads(resources.files("appliance").joinpath(*SCHEMA_RESOURCE).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _tests(value: Any, key: str, where: str, path: Path) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where}: {key} is a string but not a JSON list ({exc.msg})", path=path,
                           hint='write it as ["tests/test_x.py::test_a", ...]') from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"{where}: {key} must be a list of test ids", path=path)
    return value


def read_instances(path: Path | str) -> list[Instance]:
    """Every instance of a JSONL file, checked against the schema; ``BadInput`` names the
    file, the line and the field at fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFound("does not exist", path=path, hint="give a SWE-bench-format .jsonl file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot be read as UTF-8 text: {exc}", path=path) from exc
    out: list[Instance] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where} is not JSON ({exc.msg})", path=path, hint="one JSON object per line") from exc
        error = best_match(_validator().iter_errors(doc))
        if error is not None:
            at = "/".join(str(p) for p in error.absolute_path) or "the object"
            raise BadInput(f"{where}: {at}: {error.message[:160]}", path=path,
                           hint="each line needs instance_id, repo, base_commit, patch, test_patch, FAIL_TO_PASS")
        if doc["instance_id"] in seen:
            raise BadInput(f"{where}: instance {doc['instance_id']} appears twice", path=path)
        seen.add(doc["instance_id"])
        out.append(Instance(
            instance_id=doc["instance_id"], repo=doc["repo"], base_commit=doc["base_commit"].lower(),
            patch=doc["patch"], test_patch=doc["test_patch"],
            fail_to_pass=_tests(doc["FAIL_TO_PASS"], "FAIL_TO_PASS", where, path),
            pass_to_pass=_tests(doc.get("PASS_TO_PASS", []), "PASS_TO_PASS", where, path),
            problem_statement=doc.get("problem_statement", ""), line=lineno,
        ))
    if not out:
        raise BadInput("holds no instance", path=path, hint="one SWE-bench instance (a JSON object) per line")
    return out


class Agreement(StrEnum):
    """How cra's FAIL_TO_PASS compares with an instance's."""

    SAME = "same"
    SUBSET = "subset"        # cra finds some of theirs, and nothing else
    SUPERSET = "superset"    # cra finds all of theirs, and more
    DIFFERENT = "different"  # each finds tests the other does not (or no common one)
    UNCHECKED = "unchecked"  # cra could not judge: the patches do not apply, no environment, ...


@dataclass
class CheckResult:
    """cra's verdict on one instance, beside the instance's own."""

    instance_id: str
    package: str
    agreement: Agreement
    reason: str
    cra_status: str | None = None
    theirs: list[str] = field(default_factory=list)
    cra: list[str] = field(default_factory=list)
    pass_to_pass: str | None = None  # the same comparison for PASS_TO_PASS
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Unchecked(Exception):
    """Ends one instance's check with ``unchecked`` and the reason."""


def compare(theirs: list[str], ours: list[str]) -> Agreement:
    a, b = set(theirs), set(ours)
    if a == b:
        return Agreement.SAME
    if b < a:
        return Agreement.SUBSET
    if b > a:
        return Agreement.SUPERSET
    return Agreement.DIFFERENT


def _seen(task: TaskRecord, test: str) -> str:
    """What cra observed of one test: its outcome before and after the gold patch."""
    before = task.outcomes.get("before", {}).get(test)
    after = task.outcomes.get("after1", {}).get(test)
    if before is None and after is None:
        return f"{test} (not collected by cra: another id, or not in the test_patch's files)"
    return f"{test} (before: {before or 'not collected'}, after: {after or 'not collected'})"


def explain(agreement: Agreement, theirs: list[str], task: TaskRecord) -> str:
    ours = task.fail_to_pass
    only_theirs = [t for t in theirs if t not in ours]
    only_ours = [t for t in ours if t not in theirs]
    parts = []
    if agreement == Agreement.SAME:
        return f"both find the same {len(ours)} test(s)"
    if only_theirs:
        parts.append("not FAIL_TO_PASS for cra: " + "; ".join(_seen(task, t) for t in only_theirs[:5]))
    if only_ours:
        parts.append("FAIL_TO_PASS only for cra: " + "; ".join(_seen(task, t) for t in only_ours[:5]))
    if not ours and task.reason:
        parts.append(f"cra: {task.status}: {task.reason}")
    return " | ".join(parts)


def synthesize_commit(repo_dir: Path, inst: Instance) -> CommitRecord:
    """The instance as a commit of cra's own in the package's clone: ``base_commit`` with the
    ``test_patch`` and the ``patch`` applied, built in a scratch index (no checkout, no
    branch); its files are test-side or source-side as the instance split them."""
    try:
        base = git(repo_dir, "rev-parse", "--verify", "--quiet", f"{inst.base_commit}^{{commit}}").strip()
    except GitError as exc:
        raise _Unchecked(f"base commit {inst.base_commit[:12]} is not in the package's clone") from exc
    with tempfile.TemporaryDirectory(prefix="cra-instance-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git(repo_dir, "read-tree", base, env=env)
        for label, patch in (("test_patch", inst.test_patch), ("patch", inst.patch)):
            if not patch.strip():
                continue
            try:
                git(repo_dir, "apply", "--cached", "--whitespace=nowarn", "-", env=env,
                    input=patch.encode("utf-8", "surrogateescape"))
            except GitError as exc:
                raise _Unchecked(f"the {label} does not apply at {base[:12]}: {exc.message}") from exc
        tree = git(repo_dir, "write-tree", env=env).strip()
    title = (inst.problem_statement.strip().splitlines() or [inst.instance_id])[0][:200]
    sha = git(repo_dir, "commit-tree", tree, "-p", base, "-m", f"{title}\n\ncra: SWE-bench instance {inst.instance_id}").strip()
    tests = set(patch_paths(inst.test_patch))
    files = [FileChange(p, 0, 0, "test") for p in sorted(tests)]
    files += [FileChange(p, 0, 0, "source") for p in patch_paths(inst.patch) if p not in tests]
    now = datetime.now(UTC)
    return CommitRecord(sha=sha, parent=base, author_date=now.isoformat(timespec="seconds"),
                        author_ts=int(now.timestamp()), title=title, message=inst.problem_statement or title,
                        files=files)


def era_for(repo_dir: Path, db: Database, name: str, base: str) -> EraRecord | None:
    """The dependency era of ``base``: that of the nearest kept commit on its first-parent
    history, else (a base older than every kept commit) the oldest era."""
    eras = {e.key: e for e in get_eras(db, name)}
    kept = {c.sha: c.era_key for c in get_commits(db, name) if c.era_key}
    for sha in git(repo_dir, "rev-list", "--first-parent", base).split():
        if sha in kept:
            return eras.get(kept[sha])
    first = min((c for c in get_commits(db, name) if c.era_key), key=lambda c: c.author_ts, default=None)
    return eras.get(first.era_key) if first and first.era_key else None


def package_for(db: Database, inst: Instance, repo: str | None) -> str:
    """The repo package an instance is for: ``repo`` when given, else the one whose origin
    (or name) its ``repo`` field names."""
    if repo:
        get_repo(db, repo)
        return repo
    for r in list_repos(db):
        if inst.repo in (repo_slug(r["origin_url"], r["name"]), r["name"]) or inst.repo.split("/")[-1] == r["name"]:
            return str(r["name"])
    raise NotFound(f"instance {inst.instance_id} is for repo '{inst.repo}', which is not packaged here",
                   hint="import its package ('cra corpus import'), or name it with --repo NAME")


def check_instance(home: Home, db: Database, name: str, inst: Instance, *, slot: int,
                   options: ValidationOptions) -> CheckResult:
    """Validate one instance with cra's oracle and compare; every ending is a result."""
    started = time.monotonic()
    result = CheckResult(inst.instance_id, name, Agreement.UNCHECKED, "", theirs=inst.fail_to_pass)
    try:
        repo_dir = home.repo_dir(name)
        commit = synthesize_commit(repo_dir, inst)
        era = era_for(repo_dir, db, name, commit.parent or "")
        task = validate_commit(home, name, commit, era, slot=slot, options=options,
                               python=options.python or get_repo(db, name).python_version)
        result.cra_status, result.cra = task.status, task.fail_to_pass
        if task.status not in (TaskStatus.VALID, TaskStatus.NO_FAIL_TO_PASS, TaskStatus.FLAKY):
            raise _Unchecked(f"cra: {task.status}: {task.reason} (log: {task.log_path})")
        result.agreement = compare(inst.fail_to_pass, task.fail_to_pass)
        result.reason = explain(result.agreement, inst.fail_to_pass, task)
        if inst.pass_to_pass:
            result.pass_to_pass = compare(inst.pass_to_pass, task.pass_to_pass).value
    except _Unchecked as why:
        result.reason = str(why)
    except CraError as exc:  # git trouble in the clone: this instance cannot be judged
        result.reason = f"cra could not check it: {exc}"
    result.seconds = round(time.monotonic() - started, 2)
    return result


def check_instances(
    home: Home, db: Database, path: Path | str, *, repo: str | None = None,
    options: ValidationOptions | None = None,
    progress: Callable[[int, int, CheckResult | None], None] | None = None,
) -> list[CheckResult]:
    """Check every instance of a SWE-bench-format JSONL file (see the module docstring).

    The file is read and every instance matched to a package before anything runs, so a
    bad file or an unknown repo is one ``BadInput`` up front.
    """
    instances = read_instances(path)
    packages = [package_for(db, inst, repo) for inst in instances]
    options = options or ValidationOptions()
    tick = progress or (lambda done, total, result: None)
    tick(0, len(instances), None)
    results: list[CheckResult] = []
    for inst, name in zip(instances, packages, strict=True):
        with free_slot(home.worktrees / name) as slot:
            results.append(check_instance(home, db, name, inst, slot=slot, options=options))
        tick(len(results), len(instances), results[-1])
    return results
