"""A small repo with a history to evaluate on: real commits, stored as validated tasks.

``build_world`` makes a package of four modules and ``n`` feature commits, one per hour
(``RepoBuilder``'s clock), each adding a function to one module (and, every third commit,
a helper to another module that the first imports) with a test for it, then registers the
repo and stores every commit as a ``valid`` task with its real gold and test patches.
Stage-level evaluation needs no environment, so no validation run is made here; the
end-to-end tests use the inkwell sample, validated for real.

``add_dataset`` stores a ``training_datasets`` row with ``training_dataset_rows`` for
given tasks, the way ``cra curate-data`` records one, for the leakage and cutoff checks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from repo_builder import RepoBuilder

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.evaluation import TaskRef, valid_tasks
from appliance.db.tasks import TaskRecord, save_task
from appliance.records import CommitRecord, FileChange, RepoRecord
from harness.testrun import split_commit

MODULES = ("shapes", "units", "words", "colors")
WORDS = ("area", "scale", "count", "blend", "round", "merge", "split", "trim", "pad", "mix", "sum", "span",
         "fold", "swap", "clip", "join")


@dataclass
class World:
    home: Home
    db: Database
    repo: str
    tasks: list[TaskRef]  # oldest first

    def cutoff_before(self, index: int) -> int:
        """A cutoff that holds out ``tasks[index:]``."""
        return self.tasks[index].author_ts


def _python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def build_world(root: Path, home: Home, db: Database, *, n: int = 12, name: str = "geo") -> World:
    src = RepoBuilder(root / f"{name}-src")
    files = {"pyproject.toml": "[project]\nname = 'geo'\nversion = '0'\n", "pkg/__init__.py": '"""Geo."""\n'}
    for m in MODULES:
        files[f"pkg/{m}.py"] = f'"""{m.title()}."""\n\n\ndef base_{m}(x):\n    return x\n'
        files[f"tests/test_{m}.py"] = f"from pkg.{m} import base_{m}\n\n\ndef test_base():\n    assert base_{m}(1) == 1\n"
    shas = [src.commit("Start the package", files)]
    texts = dict(files)
    for i in range(n):
        mod, word = MODULES[i % len(MODULES)], WORDS[i % len(WORDS)]
        fn = f"{word}_{mod}"
        change: dict[str, str] = {}
        if i % 3 == 2:  # a helper in another module, imported by this one
            other = MODULES[(i + 1) % len(MODULES)]
            helper = f"{word}_helper"
            texts[f"pkg/{other}.py"] += f"\n\ndef {helper}(x):\n    return x * 2\n"
            change[f"pkg/{other}.py"] = texts[f"pkg/{other}.py"]
            texts[f"pkg/{mod}.py"] = (f"from pkg.{other} import {helper}\n" + texts[f"pkg/{mod}.py"]
                                      + f"\n\ndef {fn}(x):\n    return {helper}(x) + {i}\n")
        else:
            texts[f"pkg/{mod}.py"] += f"\n\ndef {fn}(x):\n    return x + {i}\n"
        change[f"pkg/{mod}.py"] = texts[f"pkg/{mod}.py"]
        texts[f"tests/test_{mod}.py"] = (texts[f"tests/test_{mod}.py"].replace("import ", f"import {fn}, ", 1)
                                         + f"\n\ndef test_{fn}():\n    assert {fn}(0) >= 0\n")
        change[f"tests/test_{mod}.py"] = texts[f"tests/test_{mod}.py"]
        shas.append(src.commit(f"Add {fn}() to the {mod} module\n\n{fn} returns its input moved by {i}.", change))
    clone = home.repo_dir(name)
    shutil.copytree(src.path, clone)
    commits = []
    for parent, sha in itertools.pairwise(shas):
        ts = int(src.git("log", "-1", "--format=%at", sha).strip())
        title = src.git("log", "-1", "--format=%s", sha).strip()
        split = split_commit(src.path, parent, sha)
        commits.append((CommitRecord(
            sha=sha, parent=parent, author_date=src.git("log", "-1", "--format=%aI", sha).strip(), author_ts=ts,
            title=title, message=src.git("log", "-1", "--format=%B", sha),
            files=[FileChange(p, 1, 0, "source") for p in split.source_changed]
            + [FileChange(p, 1, 0, "test") for p in split.test_changed]), split))
    register_repo(db, RepoRecord(name, str(src.path), shas[-1], "main", _python(), "python -m pytest"), [],
                  [c for c, _ in commits])
    for commit, split in commits:
        save_task(db, TaskRecord(repo=name, sha=commit.sha, parent=commit.parent, status="valid",
                                 instruction=commit.message.strip(), test_patch=split.test_patch,
                                 gold_patch=split.gold_patch, test_files=split.run_files,
                                 fail_to_pass=[f"{split.run_files[0]}::test_x"]))
    return World(home, db, name, valid_tasks(db, repos=[name]))


def add_dataset(db: Database, tasks: list[TaskRef], *, cutoff_ts: int, slot: str = "scope",
                extra_hashes: tuple[str, ...] = ()) -> int:
    """A curated dataset's rows, one per task (and one imported row per extra content hash)."""
    with db.write() as c:
        cur = c.execute(
            "INSERT INTO training_datasets (slot, kind, path, content_hash, cutoff_ts, rows_train, rows_valid,"
            " counts, source_mix, domain_mix, params, created_at) VALUES (?, 'sft', 'var/datasets/x', ?, ?, ?, 0,"
            " '{}', '{}', '{}', '{}', '2026-01-01')",
            (slot, hashlib.sha256(json.dumps([t.key for t in tasks]).encode() + str(extra_hashes).encode())
             .hexdigest(), cutoff_ts, len(tasks) + len(extra_hashes)))
        ds = int(cur.lastrowid or 0)
        rows = [(ds, "train", i, t.repo, t.sha, t.author_ts, "gold", hashlib.sha256(t.sha.encode()).hexdigest())
                for i, t in enumerate(tasks)]
        rows += [(ds, "train", len(tasks) + j, None, None, None, "imported", h) for j, h in enumerate(extra_hashes)]
        c.executemany("INSERT INTO training_dataset_rows (dataset_id, split, row_no, repo, sha, author_ts, source,"
                      " content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return ds


def write_sft_dataset(db: Database, home: Home, *, slot: str, rows: list[dict], cutoff_ts: int, tag: str) -> int:
    """A curated SFT dataset as ``cra curate-data`` leaves one (the folder with train.jsonl,
    valid.jsonl and dataset.json, its ``training_datasets`` row and one ``training_dataset_rows``
    row per example); ``rows``: {prompt, completion, repo, sha, author_ts}."""
    def row_hash(r: dict) -> str:
        return hashlib.sha256(json.dumps([r["prompt"], r["completion"], r["sha"]]).encode()).hexdigest()

    # The row's provenance rides along, as in curate-data's files (a later curation replays them).
    text = "".join(json.dumps({"prompt": r["prompt"], "completion": r["completion"], "source": "gold",
                               "repo": r["repo"], "sha": r["sha"], "author_ts": r["author_ts"], "domain": r["repo"],
                               "content_hash": row_hash(r)}, sort_keys=True) + "\n" for r in rows)
    content_hash = hashlib.sha256(text.encode()).hexdigest()
    rel = f"var/datasets/{slot}-sft-{tag}"
    folder = home.root / rel
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text(text, encoding="utf-8")
    (folder / "valid.jsonl").write_text("", encoding="utf-8")
    (folder / "dataset.json").write_text(json.dumps({"version": 1, "slot": slot, "kind": "sft",
                                                     "cutoff_ts": cutoff_ts, "content_hash": content_hash}))
    with db.write() as c:
        cur = c.execute(
            "INSERT INTO training_datasets (slot, kind, path, content_hash, cutoff_ts, rows_train, rows_valid,"
            " counts, source_mix, domain_mix, params, created_at) VALUES (?, 'sft', ?, ?, ?, ?, 0, '{}', '{}',"
            " '{}', '{}', '2026-01-01')", (slot, rel, content_hash, cutoff_ts, len(rows)))
        ds = int(cur.lastrowid or 0)
        c.executemany("INSERT INTO training_dataset_rows (dataset_id, split, row_no, repo, sha, author_ts, source,"
                      " content_hash) VALUES (?, 'train', ?, ?, ?, ?, 'gold', ?)",
                      [(ds, i, r["repo"], r["sha"], r["author_ts"], row_hash(r)) for i, r in enumerate(rows)])
    return ds
