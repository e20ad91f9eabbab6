"""What gold-patch validation costs beyond the tests themselves, and what an environment costs.

For each commit measured, cra's wall time for ``validate_commit`` (checkout, patches,
restoring tests, the install check, three sandboxed pytest runs, reading the results) is
set against the *bare* pytest runs it made: the same three pytest command lines, run with
``subprocess.run`` in the same prepared checkout, no sandbox, no bookkeeping. Environments
and editable installs are warm (a first pass validates every commit before timing), so the
ratio is the harness's own overhead; the target is at most 1.25. Only commits that end
``valid`` count ("per validated commit"). Each commit is timed ``--repeat`` times, cra and
bare alternating, and the medians are used: a 2-core box shared with other work is noisy.

Separately, the era environment is built once from scratch in a throwaway home (the first
build a new box pays) and then asked for again (what every later commit pays).

    python benchmarks/validate.py                          # the inkwell sample (needs PyPI once)
    python benchmarks/validate.py --home H --repo NAME     # an imported repo package
    python benchmarks/validate.py --limit 8 --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.config import Home, Settings
from appliance.db.core import Database
from appliance.db.corpus import get_eras
from appliance.db.tasks import pending_commits
from harness.envs import EnvSpec, ensure_env, find_uv
from harness.testrun import is_test_file, pytest_argv, run_env, split_commit
from harness.validation import ValidationOptions, validate_commit
from harness.worktrees import (
    apply_patch,
    checkout,
    ensure_installed,
    ensure_worktree,
    keep_list,
    restore_test_files,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "corpus" / "samples" / "inkwell.bundle"
TARGET = 1.25


def sample_home(work: Path) -> tuple[Home, str]:
    """A home with the inkwell sample added the product's way (``cra corpus add``)."""
    from appliance.packaging.corpus import add_repo

    home = Home(work / "home")
    home.root.mkdir(parents=True)
    with Database(home.db_path) as db:
        add_repo(home, db, Settings(), str(SAMPLE))
    return home, "inkwell"


def env_build_times(home: Home, db: Database, name: str, work: Path) -> dict[str, float | str]:
    """First build and cached lookup of the first locked era's env, in a throwaway home."""
    era = next((e for e in get_eras(db, name) if e.status == "locked" and e.lock_path), None)
    if era is None:
        return {}
    scratch = Home(work / "cold-home")
    wheelhouse = home.wheelhouse(name)
    lock = wheelhouse / str(era.lock_path)
    spec = EnvSpec.for_lock(name, lock)
    start = time.perf_counter()
    ensure_env(scratch, spec, lock, wheelhouse)
    first = time.perf_counter() - start
    start = time.perf_counter()
    ensure_env(scratch, spec, lock, wheelhouse)
    cached = time.perf_counter() - start
    shutil.rmtree(scratch.root, ignore_errors=True)
    return {"installer": "uv" if find_uv() else "pip", "first_build_s": round(first, 3),
            "cached_s": round(cached, 6)}


def bare_pytest_seconds(home: Home, name: str, commit, era, slot: int, work: Path) -> float:
    """The three pytest runs validation makes, replayed bare in the same checkout."""
    repo = home.repo_dir(name)
    split = split_commit(repo, commit.parent, commit.sha, commit.files)
    wheelhouse = home.wheelhouse(name)
    spec = EnvSpec.for_lock(name, wheelhouse / str(era.lock_path))
    base = ensure_env(home, spec, wheelhouse / str(era.lock_path), wheelhouse)
    wt = ensure_worktree(home, name, slot)
    total = 0.0
    for label, patch in (("before", split.test_patch), ("after1", split.gold_patch), ("after2", split.gold_patch)):
        checkout(wt, commit.parent, keep=keep_list(wt))
        apply_patch(wt, patch)
        restore_test_files(wt, commit.sha, is_test_file)
        python = ensure_installed(home, wt, base, spec.key, wheelhouse, sha=commit.sha, log=work / "bare.log")
        run_dir = work / "bare" / label
        shutil.rmtree(run_dir, ignore_errors=True)
        (run_dir / "junit").mkdir(parents=True)
        argv = pytest_argv(python, wt.path, split.run_files, run_dir)
        start = time.perf_counter()
        subprocess.run(argv, cwd=wt.path, env=run_env(python, [base.parent]), capture_output=True, check=False)
        total += time.perf_counter() - start
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="CRA_HOME holding an imported repo package")
    parser.add_argument("--repo", help="the repo package's name (with --home)")
    parser.add_argument("--limit", type=int, default=12, help="commits to time (default 12)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per commit; medians (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if bool(args.home) != bool(args.repo):
        parser.error("--home and --repo go together")

    work = Path(tempfile.mkdtemp(prefix="cra-bench-validate-"))
    try:
        home, name = (Home.from_env(args.home), args.repo) if args.home else sample_home(work)
        db = Database(home.db_path)
        eras = {e.key: e for e in get_eras(db, name)}
        commits = pending_commits(db, name, include_done=True, limit=args.limit)
        env_times = env_build_times(home, db, name, work)
        options = ValidationOptions()
        # Warm pass, untimed: environments, overlays and editable installs exist afterwards.
        warm = {c.sha: validate_commit(home, name, c, eras.get(c.era_key or ""), slot=0, options=options)
                for c in commits}
        rows = []
        for commit in commits:
            era = eras.get(commit.era_key or "")
            if warm[commit.sha].status != "valid" or era is None:
                continue
            cra_times, bare_times = [], []
            for _ in range(args.repeat):  # alternate, so both see the same machine load
                start = time.perf_counter()
                task = validate_commit(home, name, commit, era, slot=0, options=options)
                cra_times.append(time.perf_counter() - start)
                bare_times.append(bare_pytest_seconds(home, name, commit, era, 0, work))
            cra, bare = statistics.median(cra_times), statistics.median(bare_times)
            rows.append({
                "sha": commit.sha[:12], "cra_s": round(cra, 3), "bare_pytest_s": round(bare, 3),
                "sandboxed_pytest_s": task.durations.get("pytest", 0.0),
                "prepare_s": task.durations.get("prepare", 0.0),
                "install_check_s": task.durations.get("install", 0.0),
            })
        cra_total = sum(r["cra_s"] for r in rows)
        bare_total = sum(r["bare_pytest_s"] for r in rows)
        result = {
            "version": 1,
            "repo": name,
            "validated_commits": len(rows),
            "cra_s_per_commit": round(cra_total / len(rows), 3) if rows else None,
            "bare_pytest_s_per_commit": round(bare_total / len(rows), 3) if rows else None,
            "ratio": round(cra_total / bare_total, 3) if bare_total else None,
            "target": TARGET,
            "median_prepare_s": round(statistics.median(r["prepare_s"] for r in rows), 3) if rows else None,
            "median_sandboxed_pytest_s": round(statistics.median(r["sandboxed_pytest_s"] for r in rows), 3) if rows else None,
            "env": env_times,
            "commits": rows,
        }
        db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'commit':<13} {'cra s':>7} {'bare pytest s':>14} {'ratio':>6}")
    for r in rows:
        print(f"{r['sha']:<13} {r['cra_s']:>7.2f} {r['bare_pytest_s']:>14.2f} {r['cra_s'] / r['bare_pytest_s']:>6.2f}")
    print(f"\n{name}: {len(rows)} validated commits; cra {result['cra_s_per_commit']} s per commit, "
          f"bare pytest {result['bare_pytest_s_per_commit']} s: ratio {result['ratio']} (target <= {TARGET})")
    if env_times:
        print(f"environment ({env_times['installer']}): first build {env_times['first_build_s']} s, "
              f"cached {env_times['cached_s'] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
