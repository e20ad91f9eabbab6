"""Benchmark the Index and Retrieve stages on a real repository.

    .venv/bin/python benchmarks/index.py /tmp/realrepos/attrs [--pairs 10] [--queries 50]

Measures, in one run and on the same trees:

1. incremental re-index: commit N+1 into an index that already holds its parent N
   (the latest first-parent commits that change Python files, as tasks are),
   against the baseline of a full index of commit N+1 into an empty index
   (target: at least 10x faster);
2. retrieval latency per query, with each commit's own message as the instruction,
   run against its parent commit (the task setting), and how often a file the commit
   really changed is among the top files (a sanity check, not a tuned metric).

The repo should hold at least 20,000 lines of Python at its head; the script says how many.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.index import SymbolIndex, list_python_files, read_blobs
from harness.retrieve import retrieve


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    parts = path.split("/")[:-1]
    return (
        name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
        or any(p in ("tests", "test", "testing") for p in parts)
    )


def python_lines(repo: Path, sha: str) -> tuple[int, int]:
    entries = list_python_files(repo, sha)
    lines = sum(data.count(b"\n") for _, data in read_blobs(repo, [b for _, b in entries]) if data)
    return len(entries), lines


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_index(repo: Path, commits: list[str], tmp: Path) -> dict[str, object]:
    """Each commit N+1 (changing Python files) against its parent N."""
    # Warm the OS page cache and git's pack index so the first timed run is not penalised.
    with SymbolIndex(tmp / "warmup.db") as ix:
        ix.index_commit(repo, commits[-1])

    incremental: list[float] = []
    parsed: list[int] = []
    with SymbolIndex(tmp / "rolling.db") as ix:
        for sha in commits:  # oldest first: the index also holds earlier history, as in use
            ix.index_commit(repo, parent_of(repo, sha))
            stats = ix.index_commit(repo, sha)
            incremental.append(stats.seconds)
            parsed.append(stats.parsed)

    full: list[float] = []
    for i, sha in enumerate(commits):
        with SymbolIndex(tmp / f"full-{i}.db") as ix:
            stats = ix.index_commit(repo, sha)
            full.append(stats.seconds)
            assert stats.reused == 0
    return {
        "pairs": len(full),
        "full_median_s": statistics.median(full),
        "incremental_median_s": statistics.median(incremental),
        "full_total_s": sum(full),
        "incremental_total_s": sum(incremental),
        "ratio_median": statistics.median(full) / statistics.median(incremental),
        "ratio_total": sum(full) / sum(incremental),
        "files_parsed_per_incremental": parsed,
    }


def parent_of(repo: Path, sha: str) -> str:
    return git(repo, "rev-parse", f"{sha}^").strip()


def bench_retrieve(repo: Path, commits: list[str], tmp: Path) -> dict[str, object]:
    latencies: list[float] = []
    index_times: list[float] = []
    hits = {1: 0, 5: 0, 10: 0}
    judged = 0
    with SymbolIndex(tmp / "tasks.db") as ix:
        for sha in commits:  # oldest first, so each parent index is incremental
            parent = parent_of(repo, sha)
            index_times.append(ix.index_commit(repo, parent).seconds)
            message = git(repo, "log", "-1", "--format=%B", sha)
            result = retrieve(ix, parent, message, k_files=10, k_symbols=20, exclude=is_test)
            latencies.append(result.seconds)
            changed = {
                p for p in git(repo, "diff", "--name-only", "--no-renames", parent, sha).split("\n")
                if p.endswith(".py") and not is_test(p)
            }
            before = {f.path for f in ix.files(parent)}
            targets = changed & before
            if targets:
                judged += 1
                ranked = [f.path for f in result.files]
                for k in hits:
                    hits[k] += bool(targets & set(ranked[:k]))
    return {
        "queries": len(latencies),
        "latency_p50_ms": 1000 * statistics.median(latencies),
        "latency_p95_ms": 1000 * pct(latencies, 0.95),
        "latency_max_ms": 1000 * max(latencies),
        "parent_index_median_ms": 1000 * statistics.median(index_times[1:] or index_times),
        "judged": judged,
        **{f"changed_file_in_top{k}": (hits[k] / judged if judged else 0.0) for k in hits},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", type=Path, help="a git clone (for example /tmp/realrepos/attrs)")
    ap.add_argument("--rev", default="HEAD", help="newest commit to use (default HEAD)")
    ap.add_argument("--pairs", type=int, default=10, help="consecutive commit pairs to re-index")
    ap.add_argument("--queries", type=int, default=50, help="commits whose messages are queries")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)
    repo = args.repo.resolve()

    # Commits as tasks are: on the default branch, not merges, changing Python files.
    line = git(repo, "rev-list", "--first-parent", "--no-merges", f"-n{max(args.pairs, args.queries)}",
               args.rev, "--", "*.py").split()
    line = [s for s in line if git(repo, "rev-list", "--parents", "-n1", s).count(" ")]  # not a root
    pair_commits = line[: args.pairs][::-1]
    query_commits = line[: args.queries][::-1]
    head = git(repo, "rev-parse", args.rev).strip()
    files, lines = python_lines(repo, head)

    with tempfile.TemporaryDirectory(prefix="cra-bench-index-") as tmpdir:
        tmp = Path(tmpdir)
        started = time.perf_counter()
        index = bench_index(repo, pair_commits, tmp)
        retrieval = bench_retrieve(repo, query_commits, tmp)
        wall = time.perf_counter() - started

    report = {"repo": str(repo), "rev": head, "python_files": files, "python_lines": lines,
              "index": index, "retrieve": retrieval, "wall_s": wall}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"repo {repo} at {head[:12]}: {files} Python files, {lines:,} lines"
          + ("" if lines >= 20_000 else "  (under the 20,000 lines the benchmark asks for)"))
    print(f"\nIndex: {index['pairs']} (parent, commit) pairs, the latest first-parent commits changing .py files")
    print(f"  full index of commit N+1 (baseline)  median {index['full_median_s'] * 1000:8.1f} ms")
    print(f"  incremental N -> N+1                 median {index['incremental_median_s'] * 1000:8.1f} ms"
          f"   files parsed: {index['files_parsed_per_incremental']}")
    print(f"  speed-up: {index['ratio_median']:.1f}x (medians), {index['ratio_total']:.1f}x (totals)"
          f"   target >= 10x: {'met' if index['ratio_median'] >= 10 else 'NOT met'}")
    r = retrieval
    print(f"\nRetrieve: {r['queries']} commit messages as instructions, each at its parent commit")
    print(f"  latency per query  p50 {r['latency_p50_ms']:.1f} ms   p95 {r['latency_p95_ms']:.1f} ms"
          f"   max {r['latency_max_ms']:.1f} ms")
    print(f"  indexing each parent (incremental)  median {r['parent_index_median_ms']:.1f} ms")
    print(f"  a changed source file in the top 1 / 5 / 10 files: {r['changed_file_in_top1']:.0%} / "
          f"{r['changed_file_in_top5']:.0%} / {r['changed_file_in_top10']:.0%} (of {r['judged']} commits"
          " that change an existing non-test .py file)")
    print(f"\nwall time {wall:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
