"""LogAnalysisAPI on a DB with 100,000 LLM calls: every query must answer in under a second.

A raw DB is generated with plain SQL (10 repos x 500 tasks, 5 runs per task by 3 models
and 2 adapters, 1-3 attempts per run, a plan and an execute call per attempt: 100,000
calls, with retrievals, scored plans, attempts with failure output, infra_error runs).
Then each query of the API is timed, unsliced and sliced (by model, by repo, by domain, by
a time window), best of 3. The named baseline, measured in the same run, is one full read
of the ``llm_calls`` table (``SELECT * FROM llm_calls``, every row fetched): each query's
ratio to it is printed next to its seconds, wall and CPU (on a shared box the wall time
includes waiting for a core). Target: every query under 1 second; the exit status checks
the CPU seconds, which a busy neighbour does not inflate.

    python benchmarks/log_analysis.py [--calls 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.config import TrainingConfig
from appliance.db.core import Database
from appliance.training.logs import LogAnalysisAPI
from appliance.training.plan import build_plan

TARGET_S = 1.0
MODELS = ["coder-3b", "coder-7b", "teacher-397b"]
ADAPTERS = ["", "execute-code/v1"]


def generate(path: Path, calls: int, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    db = Database(path)
    repos, per_repo, runs_per_task = 10, 500, 5
    now = "2025-01-01T00:00:00+00:00"
    counts = dict.fromkeys(("runs", "attempts", "calls", "retrievals", "plans"), 0)
    with db.write() as c:
        for r in range(repos):
            c.execute("INSERT INTO repos (id, name, origin_url, head_sha, default_branch, python_version, test_cmd,"
                      " source, created_at, updated_at) VALUES (?, ?, '/x', ?, 'main', '3.11', 'pytest', 'added', ?, ?)",
                      (r + 1, f"repo{r}", "0" * 40, now, now))
            commits = []
            for i in range(per_repo):
                files = [{"path": f"src/m{i % 40}.py", "added": 3, "deleted": 1, "kind": "source",
                          "old_path": None, "binary": False},
                         {"path": "tests/test_m.py", "added": 5, "deleted": 0, "kind": "test", "old_path": None,
                          "binary": False}]
                symbols = {f"src/m{i % 40}.py": [f"f{i % 7}", f"C{i % 5}.g"], "tests/test_m.py": ["test_x"]}
                commits.append((r + 1, f"{r:02d}{i:038x}", 1_600_000_000 + i * 3600, json.dumps(files),
                                json.dumps(symbols)))
            c.executemany("INSERT INTO commits (repo_id, sha, author_date, author_ts, title, message, status,"
                          " files_changed, lines_added, lines_deleted, files, symbols, scores)"
                          " VALUES (?, ?, '', ?, 't', 't', 'kept', 2, 8, 1, ?, ?, '{}')", commits)
        run_id = call_id = 0
        task_list = [(r, i) for r in range(repos) for i in range(per_repo)]
        while counts["calls"] < calls:
            for r, i in task_list:
                if counts["calls"] >= calls:
                    break
                sha = f"{r:02d}{i:038x}"
                sample = counts["runs"] // len(task_list)
                for k in range(runs_per_task):
                    if counts["calls"] >= calls:
                        break
                    run_id += 1
                    model, adapter = MODELS[k % 3], ADAPTERS[k % 2]
                    n_attempts = rng.choice((1, 1, 2, 3))
                    resolved_at = rng.choice((None, None, n_attempts))
                    status = "infra_error" if rng.random() < 0.03 else ("resolved" if resolved_at else "failed")
                    started = f"2025-{1 + run_id % 12:02d}-{1 + run_id % 28:02d}T00:00:00+00:00"
                    c.execute("INSERT INTO runs (id, repo_id, sha, provider, model, adapter, temperature, sample, status,"
                              " attempts, steps_to_green, failure_kind, started_at, summary) VALUES"
                              " (?, ?, ?, 'openai_compat', ?, ?, 0.2, ?, ?, ?, ?, ?, ?, '{}')",
                              (run_id, r + 1, sha, model, adapter, sample * 10 + k, status, n_attempts, resolved_at,
                               None if resolved_at else "tests_failed", started))
                    counts["runs"] += 1
                    got = [{"path": f"src/m{(i + j * rng.choice((0, 1))) % 40}.py", "score": 1.0 / (j + 1),
                            "symbol": "", "kind": "file", "lineno": 0, "end_lineno": 0} for j in range(10)]
                    syms = [{"path": f"src/m{i % 40}.py", "symbol": f"f{(i + j) % 7}", "score": 0.5, "kind": "function",
                             "lineno": j, "end_lineno": j + 3} for j in range(20)]
                    c.execute("INSERT INTO retrievals (run_id, attempt, query, files, symbols, seconds, created_at)"
                              " VALUES (?, 1, 'q', ?, ?, 0.01, ?)", (run_id, json.dumps(got), json.dumps(syms), started))
                    counts["retrievals"] += 1
                    for a in range(1, n_attempts + 1):
                        score = round(rng.random(), 3)
                        cur = c.execute(
                            "INSERT INTO plans (repo_id, sha, run_id, attempt, kind, source, plan, plan_hash, score,"
                            " file_precision, file_recall, file_f1, symbol_precision, symbol_recall, symbol_f1,"
                            " order_score, created_at) VALUES (?, ?, ?, ?, 'step', 'model', '{}', 'h', ?, ?, ?, ?, ?,"
                            " ?, ?, ?, ?)", (r + 1, sha, run_id, a, score, score, score, score, score, score, score,
                                             score, started))
                        counts["plans"] += 1
                        ok = resolved_at == a
                        kind = rng.choice(("apply_error", "tests_failed", "tests_failed", "bad_output"))
                        apply = "applied" if ok or kind == "tests_failed" else ("apply_error" if kind == "apply_error"
                                                                                 else "no_edits")
                        validation = {"kind": "resolved" if ok else kind}
                        if not ok and kind == "tests_failed":
                            validation["fail_to_pass"] = {f"tests/test_m.py::test_{i % 9}": "failed"}
                        edits = "" if apply == "no_edits" else "src/m.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
                        output = "" if ok else ("x" * 500 + f"\nE   AssertionError: assert {i} == {a}\n")
                        c.execute("INSERT INTO attempts (run_id, attempt, plan_id, edits, apply_status, apply_error,"
                                  " validation, test_output, resolved, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  (run_id, a, cur.lastrowid, edits, apply,
                                   "block 1 (src/m.py): SEARCH not found" if apply == "apply_error" else None,
                                   json.dumps(validation), output, int(ok), started))
                        counts["attempts"] += 1
                        for stage in ("plan", "execute"):
                            call_id += 1
                            answer = edits if rng.random() < 0.7 else "Sure!\n" + edits
                            c.execute("INSERT INTO llm_calls (run_id, repo_id, sha, stage, attempt, provider, model,"
                                      " adapter, temperature, messages, responses, latency_s, status, created_at)"
                                      " VALUES (?, ?, ?, ?, ?, 'openai_compat', ?, ?, 0.2, ?, ?, 1.5, ?, ?)",
                                      (run_id, r + 1, sha, stage, a, model, adapter,
                                       json.dumps([{"role": "user", "content": "x" * 300}]), json.dumps([answer]),
                                       "ok" if rng.random() < 0.97 else "timeout", started))
                            counts["calls"] += 1
    c = db.conn
    c.execute("ANALYZE")
    db.close()
    return counts


def best_of(fn, repeat: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds, the best of ``repeat`` cold runs (the signature memo cleared each
    time). CPU seconds are what the query costs; wall seconds on a shared box include waiting."""
    from appliance.training import logs

    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        logs._sign.cache_clear()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cra-bench-logs-") as tmp:
        path = Path(tmp) / "cra.db"
        started = time.perf_counter()
        counts = generate(path, args.calls)
        gen = time.perf_counter() - started
        db = Database(path)
        api = LogAnalysisAPI(db, domains={f"repo{r}": ("fail-fast", "lora", "data")[r % 3] for r in range(10)})
        base, base_cpu = best_of(lambda: db.conn.execute("SELECT * FROM llm_calls").fetchall())
        slices = {"all": api.slice(), "model": api.slice(model="coder-3b"), "repo": api.slice(repo="repo3"),
                  "domain": api.slice(domain="lora"), "window": api.slice(since="2025-03-01", until="2025-05-01")}
        rows = []
        for slice_name, f in slices.items():
            for query in ("scope", "precision", "plan", "execute", "validate", "failure_groups", "calls"):
                seconds, cpu = best_of(lambda q=query, f=f: getattr(api, q)(f))
                rows.append({"query": query, "slice": slice_name, "seconds": round(seconds, 3),
                             "cpu_s": round(cpu, 3), "ratio_to_baseline": round(seconds / base, 2)})
        plan_s, plan_cpu = best_of(lambda: build_plan(db, TrainingConfig(), api=api), repeat=1)
        rows.append({"query": "train-plan (everything)", "slice": "all", "seconds": round(plan_s, 3),
                     "cpu_s": round(plan_cpu, 3), "ratio_to_baseline": round(plan_s / base, 2)})
        db.close()
    queries = [r for r in rows if r["query"] != "train-plan (everything)"]
    worst = max(r["seconds"] for r in queries)
    worst_cpu = max(r["cpu_s"] for r in queries)
    if args.json:
        print(json.dumps({"rows_generated": counts, "generate_s": round(gen, 1), "baseline_s": round(base, 3),
                          "baseline_cpu_s": round(base_cpu, 3),
                          "target_s": TARGET_S, "queries": rows, "worst_s": worst, "worst_cpu_s": worst_cpu}, indent=2))
    else:
        print(f"generated {counts} in {gen:.1f} s")
        print(f"baseline: one full read of llm_calls ({counts['calls']} rows) {base:.3f} s ({base_cpu:.3f} s CPU)")
        print(f"{'query':<26}{'slice':<8}{'seconds':>9}{'CPU s':>8}{'x baseline':>12}")
        for r in rows:
            print(f"{r['query']:<26}{r['slice']:<8}{r['seconds']:>9.3f}{r['cpu_s']:>8.3f}"
                  f"{r['ratio_to_baseline']:>12.2f}")
        print(f"slowest query: {worst:.3f} s wall, {worst_cpu:.3f} s CPU (target < {TARGET_S} s)")
    return 0 if worst_cpu < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
