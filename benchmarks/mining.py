"""Benchmark commit mining + filtering against git log and against PyDriller.

    .venv/bin/python benchmarks/mining.py /tmp/realrepos/attrs [--rev HEAD] [--repeat 3]

Measures, in one run, over the same first-parent walk:

1. ``git log --first-parent --diff-merges=first-parent --numstat``, output read and
   thrown away: the cheapest pass that sees every commit's files (the baseline);
2. ``harness.mining.mine_repo`` with the default ``MiningConfig``: both stages, every
   commit judged (target: at most 3.0x the baseline);
3. PyDriller over every commit of the walk, reading what stage 1 reads (each commit's
   modified files with their added and deleted lines), once: the single-stage miner the
   two stages replace (target: at least 4.0x cra's time).

Times are wall-clock seconds, the best of ``--repeat`` runs for 1 and 2 (the box is
shared; the best run is the least disturbed one), with the CPU seconds (this process and
its git children) beside them. The repo should have at least 1,500 commits.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.config import MiningConfig
from appliance.db.corpus import STAGES
from harness.git import git_bytes
from harness.mining import judge_stage1, log_args, mine_repo, parse_log


def cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    cpu, wall = cpu_now(), time.perf_counter()
    result = fn()
    return time.perf_counter() - wall, cpu_now() - cpu, result


def git_log(repo: Path, rev: str) -> int:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--first-parent", "--diff-merges=first-parent",
         "--numstat", rev, "--"],
        capture_output=True, check=True,
    ).stdout
    return len(out)


def stage1_only(repo: Path, rev: str) -> int:
    """cra's first stage on its own (its git log, parsed and judged), for the breakdown."""
    config = MiningConfig()
    raws = parse_log(git_bytes(repo, *log_args(rev)))
    return sum(judge_stage1(raw, config).status == "kept" for raw in raws)


def pydriller_pass(repo: Path, shas: list[str]) -> int:
    from pydriller import Repository

    files = 0
    for commit in Repository(str(repo), only_commits=shas).traverse_commits():
        for mf in commit.modified_files:
            files += 1
            _ = (mf.added_lines, mf.deleted_lines, mf.new_path, mf.old_path)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-pydriller", action="store_true", help="skip the slow baseline")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()

    shas = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--first-parent", args.rev],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    log_runs, cra_runs, stage1_runs = [], [], []
    records: list[Any] = []
    for _ in range(max(1, args.repeat)):  # interleaved, so drift on a shared box hits all
        log_runs.append(timed(lambda: git_log(repo, args.rev))[:2])
        wall, cpu, records = timed(lambda: mine_repo(repo, MiningConfig(), rev=args.rev))
        cra_runs.append((wall, cpu))
        stage1_runs.append(timed(lambda: stage1_only(repo, args.rev))[:2])
    log_wall, log_cpu = min(log_runs)
    cra_wall, cra_cpu = min(cra_runs)
    stage1_wall = min(stage1_runs)[0]

    stages = collections.Counter(r.reject_stage or "kept" for r in records)
    kept = stages["kept"]
    stages_in_2 = kept + stages.get("parse", 0)  # the survivors of stage 1
    figures: dict[str, Any] = {
        "repo": str(repo),
        "commits": len(records),
        "first_parent_walk": len(shas),
        "merges": sum(r.is_merge for r in records),
        "kept": kept,
        "kept_pct": round(100.0 * kept / len(records), 1) if records else 0.0,
        "rejected_by_stage": {s: stages.get(s, 0) for s in STAGES},
        "git_log_s": round(log_wall, 3),
        "git_log_cpu_s": round(log_cpu, 3),
        "cra_s": round(cra_wall, 3),
        "cra_cpu_s": round(cra_cpu, 3),
        "cra_stage1_s": round(stage1_wall, 3),
        "cra_stage2_ms_per_survivor": round(
            1000 * (cra_wall - stage1_wall) / max(1, stages_in_2), 2
        ),
        "cra_over_git_log": round(cra_wall / log_wall, 2),
        "cra_over_git_log_cpu": round(cra_cpu / log_cpu, 2),
    }
    if not args.skip_pydriller:
        py_wall, py_cpu, files = timed(lambda: pydriller_pass(repo, shas))
        figures.update(
            pydriller_s=round(py_wall, 3),
            pydriller_cpu_s=round(py_cpu, 3),
            pydriller_files=files,
            pydriller_over_cra=round(py_wall / cra_wall, 2),
            pydriller_over_cra_cpu=round(py_cpu / cra_cpu, 2),
        )
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"repo        {repo} ({len(records)} commits on the first-parent walk, "
          f"{figures['merges']} merges)")
    print(f"funnel      kept {kept} ({figures['kept_pct']}%); rejected by stage: "
          + ", ".join(f"{s} {n}" for s, n in figures["rejected_by_stage"].items()))
    print(f"git log     {log_wall:7.3f} s  (cpu {log_cpu:.3f} s)")
    print(f"cra         {cra_wall:7.3f} s  (cpu {cra_cpu:.3f} s)   best of {len(cra_runs)}; "
          f"stage 1 {stage1_wall:.3f} s, stage 2 "
          f"{figures['cra_stage2_ms_per_survivor']:.1f} ms per survivor ({stages_in_2})")
    if "pydriller_s" in figures:
        print(f"pydriller   {figures['pydriller_s']:7.3f} s  "
              f"(cpu {figures['pydriller_cpu_s']:.3f} s)   {figures['pydriller_files']} files")
    print(f"cra / git log      {figures['cra_over_git_log']:5.2f}  (target <= 3.0; cpu "
          f"{figures['cra_over_git_log_cpu']:.2f})")
    if "pydriller_s" in figures:
        print(f"pydriller / cra    {figures['pydriller_over_cra']:5.2f}  (target >= 4.0; cpu "
              f"{figures['pydriller_over_cra_cpu']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
