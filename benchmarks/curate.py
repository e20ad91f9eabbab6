"""curate-data over 200,000 triples: its time against one plain read + write of the same JSONL,
and its peak memory at several sizes (the target: flat in the number of rows).

A raw DB is generated with N execute-stage SFT triples (prompts of about 1 kB and answers
of about 300 bytes of words, 24 repos in 8 domains, 2% near duplicates), then a fresh
process runs ``Curator`` on it (every filter on: chronology, exact and near duplicates, the
domain cap, the time split) and, in the same process, the baseline: reading the dataset's
``train.jsonl`` and ``valid.jsonl`` line by line with ``json.loads`` and writing each row
back with ``json.dumps``. The ratio (target at most 4) is curate-data's seconds over the
baseline's, printed for wall seconds and for CPU seconds; the exit status checks the CPU
ratio, since on a shared 2-core box the wall time of either side includes waiting for a
core. Peak memory is the curating process's maximum resident set size, measured at each
size in its own process, so one size's garbage never counts for another.

    python benchmarks/curate.py                    # 50k, 100k and 200k rows
    python benchmarks/curate.py --rows 20000 --json
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.config import Home, TrainingConfig
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.triples import content_hash
from appliance.records import CommitRecord, RepoRecord

TARGET = 4.0
CUTOFF = 1_700_000_000  # 2023-11-14: after every generated commit, before today
DOMAINS = ["fail-fast", "lora", "data", "ast", "testing", "vcs", "db", "cli"]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """A DB with ``rows`` execute SFT triples, written with plain executemany for speed."""
    rng = random.Random(seed)
    vocab = [f"tok{i}" for i in range(20_000)] + ["def", "return", "self", "class", "import", "=", "(", ")"]
    db = Database(path)
    repos = [f"repo{d}-{k}" for d in range(len(DOMAINS)) for k in range(3)]
    per_repo = rows // len(repos) + 1
    for name in repos:
        commits = [CommitRecord(sha=f"{name}-{i:08d}".ljust(40, "0")[:40], parent=None, author_date="",
                                author_ts=1_500_000_000 + i * 600, title="t", message="t\n") for i in range(per_repo)]
        register_repo(db, RepoRecord(name, f"/src/{name}", "0" * 40, "main", "3.11", "pytest"), [], commits)
    repo_ids = {r["name"]: r["id"] for r in db.query("SELECT id, name FROM repos")}
    batch = []
    previous: tuple[str, str] | None = None
    with db.write() as c:
        for n in range(rows):
            name = repos[n % len(repos)]
            i = n // len(repos)
            if previous is not None and rng.random() < 0.02:  # a near duplicate of the row before
                words = previous[0].split()
                words[3] = "changed"
                prompt_text, answer_text = " ".join(words), previous[1]
            else:
                prompt_text = " ".join(rng.choices(vocab, k=140))
                answer_text = " ".join(rng.choices(vocab, k=40))
            previous = (prompt_text, answer_text)
            prompt = [{"role": "system", "content": "You are the execute stage."},
                      {"role": "user", "content": prompt_text}]
            completion = [{"role": "assistant", "content": answer_text}]
            batch.append(("sft", "execute", "gold", repo_ids[name], f"{name}-{i:08d}".ljust(40, "0")[:40],
                          1_500_000_000 + i * 600 + n % 600, json.dumps(prompt), json.dumps(completion), "[]", "{}",
                          content_hash("sft", "execute", prompt, completion), "x"))
            if len(batch) >= 5000:
                c.executemany("INSERT OR IGNORE INTO triples (kind, stage, origin, repo_id, sha, author_ts, prompt,"
                              " completion, source_runs, meta, content_hash, created_at)"
                              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
                batch.clear()
        if batch:
            c.executemany("INSERT OR IGNORE INTO triples (kind, stage, origin, repo_id, sha, author_ts, prompt,"
                          " completion, source_runs, meta, content_hash, created_at)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
    db.close()


def baseline(folder: Path, out: Path) -> tuple[float, float]:
    """One plain read + write of the dataset's JSONL: json.loads and json.dumps per line.
    Returns (wall, CPU) seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    with out.open("w", encoding="utf-8") as dst:
        for name in ("train.jsonl", "valid.jsonl"):
            with (folder / name).open(encoding="utf-8") as src:
                for line in src:
                    dst.write(json.dumps(json.loads(line), ensure_ascii=False) + "\n")
    return time.perf_counter() - started, time.process_time() - cpu


def child(home_root: Path) -> dict:
    """In a fresh process: curate, then the baseline, then the peak RSS."""
    from appliance.training.curate import CurateOptions, Curator

    home = Home(home_root)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Database(home.db_path) as db:
        repos = [r["name"] for r in db.query("SELECT name FROM repos")]
        domain = {r: DOMAINS[int(r[4:].split("-")[0])] for r in repos}
        options = CurateOptions(slot="execute-code", kind="sft", cutoff_ts=CUTOFF, replay_share=0.15)
        started, cpu = time.perf_counter(), time.process_time()
        result = Curator(db, home, TrainingConfig(domain_cap=0.2), options, domain.__getitem__).run()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    folder = home.root / result.dataset.path
    base, base_cpu = baseline(folder, home.root / "copy.jsonl")
    size = sum((folder / n).stat().st_size for n in ("train.jsonl", "valid.jsonl"))
    return {"rows_in": db_rows(home), "rows_out": result.dataset.rows_train + result.dataset.rows_valid,
            "funnel": {s["step"]: s["removed"] for s in result.dataset.counts["funnel"]},
            "curate_s": round(seconds, 2), "baseline_s": round(base, 2), "ratio": round(seconds / base, 2),
            "curate_cpu_s": round(cpu, 2), "baseline_cpu_s": round(base_cpu, 2), "cpu_ratio": round(cpu / base_cpu, 2),
            "peak_rss_mb": round(rss / 1024, 1), "rss_at_start_mb": round(rss_before / 1024, 1),
            "jsonl_mb": round(size / 2**20, 1)}


def db_rows(home: Home) -> int:
    with Database(home.db_path) as db:
        return int(db.one("SELECT COUNT(*) FROM triples")[0])


def measure(rows: int, work: Path) -> dict:
    root = work / f"home-{rows}"
    home = Home(root)
    started = time.perf_counter()
    generate(home.db_path, rows)
    gen = time.perf_counter() - started
    out = subprocess.run([sys.executable, __file__, "--child", str(root)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the curating process failed:\n{out.stderr[-2000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["generate_s"] = round(gen, 1)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[50_000, 100_000, 200_000])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="cra-bench-curate-") as tmp:
        for rows in args.rows:
            results.append(measure(rows, Path(tmp)))
            if not args.json:
                r = results[-1]
                print(f"{rows:>7} triples -> {r['rows_out']:>7} rows: curate-data {r['curate_s']:.2f} s, "
                      f"baseline (read + write the {r['jsonl_mb']} MB JSONL) {r['baseline_s']:.2f} s, "
                      f"ratio {r['ratio']:.2f}; CPU {r['curate_cpu_s']:.2f} s / {r['baseline_cpu_s']:.2f} s, "
                      f"ratio {r['cpu_ratio']:.2f} (target <= {TARGET}); peak RSS {r['peak_rss_mb']} MB "
                      f"(at start {r['rss_at_start_mb']} MB); funnel {r['funnel']}", flush=True)
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = (last["peak_rss_mb"] - first["peak_rss_mb"]) * 2**20 / max(1, last["rows_in"] - first["rows_in"])
        jsonl = (last["jsonl_mb"] - first["jsonl_mb"]) * 2**20 / max(1, last["rows_out"] - first["rows_out"])
        summary = {"rss_bytes_per_extra_row": round(growth), "jsonl_bytes_per_row": round(jsonl)}
    else:
        summary = {}
    if args.json:
        print(json.dumps({"target_ratio": TARGET, "results": results, **summary}, indent=2))
    elif summary:
        print(f"peak RSS grows {summary['rss_bytes_per_extra_row']} bytes per extra row "
              f"(each row is {summary['jsonl_bytes_per_row']} bytes of JSONL)")
    worst = max(r["cpu_ratio"] for r in results)
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
