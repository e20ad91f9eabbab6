"""The whole loop on the CPU, on the shipped sample, with a small model built here.

One story, in order (the tests share the demo's air-gapped home):

1. ``cra demo``, the README's main job, in a process with no network (``unshare -rn``):
   package, export, import, validate, the demo model, a day -> sleep -> eval cycle of the
   scope slot; a report with real PNGs;
2. an evaluation that would leak, and one whose holdout is too small, are refused;
3. a second cycle (a later cutoff: more training data) killed in its evaluation resumes
   where it stopped when run again;
4. ``cra eval --promote`` promotes a version the gates find better; a worse one forced into
   the active alias by hand is rolled back by the regression check; the audit rows name the
   reports.

Every part is real: git, the sandboxed validation, SQLite, llama.cpp inference, peft + trl
training and llama.cpp's GGUF converter. Only the wheels of the sample come from PyPI
(once per session, like every test that validates).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from eval_world import write_sft_dataset
from PIL import Image

from appliance.cli import main
from appliance.config import Home
from appliance.db.core import Database
from appliance.db.evaluation import get_evaluation, list_cycles, list_evaluations
from appliance.evaluation.plots import SIZE
from appliance.evaluation.report import FIGURES

pytestmark = [pytest.mark.network, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
LATER_CUTOFF = "2024-11-01"


@dataclass
class Demo:
    home: Home
    output: str


def _cra(home: Home, *args: str) -> tuple[int, str, str]:
    """``cra --home HOME ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--home", str(home.root), *args])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Demo:
    """``cra demo`` as scripts/bootstrap.sh runs it: a process in a network namespace of its
    own (loopback only), so a connection anywhere would fail the demo."""
    from test_bundle import network_free_python
    from tinymodel import converter_dir, require_build_deps

    require_build_deps()
    root = Home(tmp_path_factory.mktemp("demo"))
    argv = [*network_free_python(), "-m", "appliance.cli", "--home", str(root.root), "demo",
            "--wheels", str(wheel_cache), "--llama-cpp", str(converter_dir())]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return Demo(Home(root.root / "demo" / "airgapped"), done.stdout)


def _db(home: Home) -> Database:
    return Database(home.db_path)


def test_the_demo_runs_the_whole_loop_offline_and_writes_a_report(demo: Demo) -> None:
    home = demo.home
    assert f"air-gapped home: {home.root}" in demo.output and "inkwell: commit funnel" in demo.output
    assert "the HTML report: " in demo.output and "decision: " in demo.output and "to undo: " in demo.output
    assert f"cra --home {home.root} report list" in demo.output  # the next commands name the home
    with _db(home) as db:
        [cycle] = list_cycles(db, "scope")
        assert cycle.stage == "done" and cycle.plan_id and cycle.dataset_id and cycle.version == 1
        runs = sum(v["runs"] for v in cycle.day.values())
        assert runs == db.one("SELECT COUNT(*) FROM tasks WHERE status = 'valid'")[0] >= 25
        row = get_evaluation(db, cycle.evaluation_id)
        assert row.done and row.decision == cycle.decision and row.decision in ("promote", "keep")
        assert row.datasets == [cycle.dataset_id] and len(row.holdout) >= 6 and len(row.frozen) == 3
        # The holdout follows the training data, and no training row is a held-out task.
        cutoff = db.one("SELECT cutoff_ts FROM training_datasets WHERE id = ?", (cycle.dataset_id,))[0]
        assert row.cutoff_ts == cutoff
        trained = {(r["repo"], r["sha"]) for r in db.query(
            "SELECT repo, sha FROM training_dataset_rows WHERE dataset_id = ?", (cycle.dataset_id,))}
        assert trained and not trained & set(row.holdout)
        assert all(db.one("SELECT author_ts FROM commits WHERE sha = ?", (sha,))[0] >= cutoff for _, sha in row.holdout)
        # Every metric was measured; every pipeline result names its runs.
        metrics = row.summary["metrics"]
        assert {"scope_recall", "symbol_recall", "plan_alignment", "meta_plan_alignment", "test_plan_alignment",
                "apply_rate", "resolved_rate", "pass_at_k", "steps_to_green", "repeat_error_rate"} <= set(metrics)
        assert metrics["scope_recall"]["holdout"]["n"] == len(row.holdout)
        e2e = db.query("SELECT detail FROM evaluation_results WHERE evaluation_id = ? AND metric = 'resolved_rate'",
                       (row.id,))
        assert all(json.loads(r[0])["run_ids"] for r in e2e)
        # The registry holds the trained version; a promotion names this report.
        events = db.query("SELECT action, to_version, report FROM adapter_events WHERE slot = 'scope' ORDER BY id")
        assert events[0]["action"] == "register" and events[0]["to_version"] == 1
        if row.decision == "promote":
            assert (events[-1]["action"], events[-1]["report"]) == ("promote", row.report) and row.applied
    folder = home.root / row.report
    for name in FIGURES:
        with Image.open(folder / name) as img:
            assert img.format == "PNG" and img.size == SIZE
    html = (folder / "report.html").read_text()
    assert all(f'href="{name}"' in html for name in FIGURES) and "http" not in html.split("<body>")[1]
    assert (folder / "report.md").read_text().startswith(f"# Evaluation {row.id}: scope@v1 against base (scope)")


def test_a_leaking_or_too_small_evaluation_is_refused(demo: Demo) -> None:
    home = demo.home
    with _db(home) as db:
        [cycle] = list_cycles(db, "scope")[:1]
        held = get_evaluation(db, cycle.evaluation_id).holdout
        before = len(list_evaluations(db))
    # Asking for a holdout that starts before the training data's cutoff.
    rc, _, err = _cra(home, "eval", "--candidate", "scope:v1", "--baseline", "base", "--cutoff", "2024-01-01")
    assert rc == 2 and "before dataset" in err and "Traceback" not in err
    # A holdout of one or two tasks.
    rc, _, err = _cra(home, "eval", "--candidate", "scope:v1", "--baseline", "base", "--cutoff", "2025-05-01")
    assert rc == 2 and "fewer than [evaluation] min_holdout = 6" in err and "would need about 197" in err
    # A curation bug that let a held-out commit into the training rows.
    repo, sha = held[-1]
    conn = sqlite3.connect(home.db_path)
    with conn:
        conn.execute("INSERT INTO training_dataset_rows (dataset_id, split, row_no, repo, sha, author_ts, source,"
                     " content_hash) VALUES (?, 'train', 9999, ?, ?, 0, 'gold', 'x')", (cycle.dataset_id, repo, sha))
    try:
        rc, _, err = _cra(home, "eval", "--candidate", "scope:v1", "--baseline", "base")
        assert rc == 2 and f"is from held-out task {repo}@{sha[:10]}" in err
    finally:
        with conn:
            conn.execute("DELETE FROM training_dataset_rows WHERE row_no = 9999")
        conn.close()
    with _db(home) as db:
        assert len(list_evaluations(db)) == before  # a refusal leaves no evaluation behind


def test_a_killed_cycle_resumes_where_it_stopped(demo: Demo) -> None:
    home = demo.home
    env = {**os.environ, "CRA_HOME": str(home.root), "OMP_NUM_THREADS": "1"}  # as the demo trains (appliance.demo)
    argv = [sys.executable, "-m", "appliance.cli", "cycle", "--slot", "scope", "--cutoff", LATER_CUTOFF, "--json"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    evaluated = False
    deadline = time.monotonic() + 1200
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
            conn = sqlite3.connect(home.db_path, timeout=30)
            try:
                stage = conn.execute("SELECT stage FROM cycles WHERE number = 2").fetchone()
                results = conn.execute("SELECT COUNT(*) FROM evaluation_results r JOIN evaluations e ON"
                                       " e.id = r.evaluation_id WHERE e.id > 1").fetchone()[0]
            finally:
                conn.close()
            if stage and stage[0] == "eval" and results > 0:
                evaluated = True
                proc.send_signal(signal.SIGKILL)  # no clean-up at all: the hardest stop
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert evaluated, (proc.stderr.read() if proc.stderr else b"").decode()[-3000:]
    with _db(home) as db:
        [second] = [c for c in list_cycles(db, "scope") if c.number == 2]
        assert second.stage == "eval" and second.version == 2
        [stopped] = [e for e in list_evaluations(db) if e.status == "running"]
        measured = db.one("SELECT COUNT(*) FROM evaluation_results WHERE evaluation_id = ?", (stopped.id,))[0]
    rc, out, err = _cra(home, "cycle", "--slot", "scope", "--cutoff", LATER_CUTOFF, "--json")
    assert rc == 0, err[-3000:]
    [done] = json.loads(out)["cycles"]
    assert done["number"] == 2 and done["stage"] == "done" and done["evaluation_id"] == stopped.id
    with _db(home) as db:
        assert [c.number for c in list_cycles(db, "scope")] == [1, 2]
        row = get_evaluation(db, stopped.id)
        assert row.done and db.one("SELECT COUNT(*) FROM evaluations WHERE candidate_version = 2")[0] == 1
        assert db.one("SELECT COUNT(*) FROM evaluation_results WHERE evaluation_id = ?", (row.id,))[0] > measured
        assert db.one("SELECT COUNT(*) FROM adapter_versions WHERE slot = 'scope'")[0] == 2  # not trained twice
        # The frozen regression set was never trained on, though the later cutoff passes some of it.
        frozen = {tuple(k) for k in row.frozen}
        rows = {(r["repo"], r["sha"]) for r in db.query(
            "SELECT repo, sha FROM training_dataset_rows WHERE dataset_id = ?", (done["dataset_id"],))}
        assert rows and not rows & frozen
        # The learning curves cover both cycles.
        md = (home.root / row.report / "report.md").read_text()
        assert "(2 so far)" in md


def _constant_scope_rows(db: Database, answer: list[str], cutoff_ts: int) -> list[dict]:
    """The early commits' scope prompts (as the gold triples hold them), each answered ``answer``."""
    rows = []
    for r in db.query("SELECT t.prompt, p.name AS repo, t.sha, t.author_ts FROM triples t JOIN repos p ON"
                      " p.id = t.repo_id WHERE t.stage = 'scope' AND t.kind = 'sft' AND t.author_ts < ?"
                      " ORDER BY t.author_ts", (cutoff_ts,)):
        rows.append({"prompt": json.loads(r["prompt"]), "repo": r["repo"], "sha": r["sha"],
                     "author_ts": r["author_ts"],
                     "completion": [{"role": "assistant", "content": json.dumps({"files": answer})}]})
    return rows


def test_a_promotion_through_the_gates_then_a_forced_regression_rolled_back(demo: Demo) -> None:
    """Two versions trained on purpose: one that always names three of the package's busiest
    modules, one that always names its __init__.py (which the later commits hardly touch).
    ``cra eval --promote`` promotes the first over the second through the gates; the second
    is then promoted by hand over it, and the regression check finds it surely worse and
    rolls it back by itself. Both moves are audit rows naming their reports."""
    home = demo.home
    forced = home.root / "forced-scope.toml"  # long enough to learn a constant answer by heart
    forced.write_text((home.adapters / "scope.toml").read_text().replace("epochs = 8", "epochs = 8\nmax_steps = 120"))
    # Greedy answers: what each version learnt by heart, not a sample around it (11 tasks leave
    # little room for sampling noise in the interval).
    settings = home.root / "cra.toml"
    settings.write_text(settings.read_text().replace("[evaluation]\n", "[evaluation]\ntemperature = 0.0\n"))
    with _db(home) as db:
        cutoff = list_cycles(db, "scope")[0].cutoff_ts
        good = _constant_scope_rows(db, ["src/inkwell/slug.py", "src/inkwell/truncate.py",
                                         "src/inkwell/template.py"], cutoff)
        bad = _constant_scope_rows(db, ["src/inkwell/__init__.py"], cutoff)
        good_ds = write_sft_dataset(db, home, slot="scope", rows=good, cutoff_ts=cutoff, tag="good")
        bad_ds = write_sft_dataset(db, home, slot="scope", rows=bad, cutoff_ts=cutoff, tag="bad")
    versions = []
    for ds in (good_ds, bad_ds):
        rc, out, err = _cra(home, "train", "scope", "--dataset", str(ds), "--recipe", str(forced), "--json")
        assert rc == 0, err[-2000:]
        versions.append(json.loads(out)["version"])
    good_v, bad_v = versions

    rc, out, err = _cra(home, "eval", "--candidate", f"scope:v{good_v}", "--baseline", f"scope:v{bad_v}",
                        "--promote", "--json")
    assert rc == 0, err[-2000:]
    promoted = json.loads(out)
    assert promoted["evaluation"]["decision"] == "promote", promoted["evaluation"]["reasons"]
    assert promoted["applied"] == "promote" and promoted["undo"] == "cra adapters rollback scope"
    assert _active(home) == good_v
    assert _cra(home, "adapters", "promote", "scope", f"v{bad_v}")[0] == 0  # forced: no evaluation behind it

    rc, out, err = _cra(home, "eval", "--candidate", "scope:active", "--json")
    assert rc == 0, err[-2000:]
    outcome = json.loads(out)
    row = outcome["evaluation"]
    assert row["kind"] == "regression" and row["candidate_version"] == bad_v and row["baseline_version"] == good_v
    assert row["decision"] == "rollback" and outcome["applied"] == "rollback", row["reasons"]
    assert row["reasons"][0].startswith("FAIL: scope recall@k") and "in the whole interval" in row["reasons"][0]
    assert outcome["undo"] == f"cra adapters promote scope v{bad_v}"
    assert _active(home) == good_v
    with _db(home) as db:
        events = [tuple(e) for e in db.query("SELECT action, from_version, to_version, report FROM adapter_events"
                                             " WHERE slot = 'scope' AND alias = 'active' ORDER BY id")]
    through_gates, by_hand, back = events[-3:]
    assert through_gates[0] == "promote" and through_gates[2:] == (good_v, promoted["evaluation"]["report"])
    assert by_hand == ("promote", good_v, bad_v, None) and back == ("rollback", bad_v, good_v, row["report"])
    rc, out, _ = _cra(home, "report", "show", str(row["id"]))
    assert rc == 0 and "ROLLBACK (applied: rollback)" in out and f"cra adapters promote scope v{bad_v}" in out


def _active(home: Home) -> int | None:
    with _db(home) as db:
        row = db.one("SELECT v.version FROM adapter_aliases a JOIN adapter_versions v ON v.id = a.version_id"
                     " WHERE a.slot = 'scope' AND a.alias = 'active'")
    return row[0] if row else None
