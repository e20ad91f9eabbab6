"""Reports: report.md, a self-contained report.html, real PNGs, and cra report list|show.

The results are stored in a real DB as an evaluation writes them (two repos, stage and
end-to-end metrics, run and call ids); the report, the figures and the CLI are the real
ones. Model-driven evaluations write reports too: test_eval_loop.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from appliance.cli import main
from appliance.config import EvaluationConfig, Home
from appliance.db import evaluation as sql
from appliance.db.core import Database
from appliance.db.evaluation import Result, TaskRef
from appliance.evaluation import report
from appliance.evaluation.gates import judge, summarize
from appliance.evaluation.plots import SIZE, id_ranges
from appliance.status import EvalArm, EvalKind

TASKS = [TaskRef(1_700_000_000 + i, "lib" if i % 2 else "app", f"{i:040x}", f"{i + 100:040x}") for i in range(8)]


def _results() -> list[Result]:
    out = []
    for i, t in enumerate(TASKS):
        for arm, scope, resolved, steps in ((EvalArm.CANDIDATE, 1.0, float(i % 3 == 0), 2.0),
                                            (EvalArm.BASELINE, 0.5 * (i % 2), 0.0, 3.0)):
            run_ids = [10 + 2 * i] if arm == EvalArm.CANDIDATE else [11 + 2 * i]
            out += [Result(arm, t.repo, t.sha, "scope_recall", scope, {"call_id": 100 + 2 * i + (arm == "baseline")}),
                    Result(arm, t.repo, t.sha, "resolved_rate", resolved, {"run_ids": run_ids}),
                    Result(arm, t.repo, t.sha, "steps_to_green", steps, {"run_ids": run_ids}),
                    Result(arm, t.repo, t.sha, "repeat_error_rate", None, {"unmeasured": "no failed repair"})]
    return out


def _evaluate(home: Home, db: Database) -> tuple[sql.EvaluationRow, Path]:
    config = EvaluationConfig(min_holdout=4)
    row, resumed = sql.start_evaluation(
        db, kind=EvalKind.CANDIDATE, slot="scope", candidate="scope@v2", baseline="scope@v1", candidate_version=2,
        baseline_version=1, cutoff_ts=TASKS[0].author_ts, params={"model": "llama_cpp tiny.gguf", "samples": 1,
                                                                   "temperature": 0.2, "effect": 0.1},
        params_hash="h1", holdout=TASKS[:6], frozen=TASKS[6:], datasets=[3])
    assert not resumed
    results = _results()
    sql.save_results(db, row.id, results)
    summary = summarize(sql.list_results(db, row.id), row.holdout, row.frozen, primary="scope_recall", config=config,
                        domain_of=lambda repo: "parsing" if repo == "lib" else "web")
    verdict = judge(summary, kind=row.kind, config=config)
    holdout = {"cutoff": "2023-11-14", "rows_checked": 40, "datasets": [3], "needed": 197, "detectable": 1.14}
    folder = report.write_report(home, row, results, summary, reasons=verdict.reasons, decision=verdict.decision,
                                 holdout=holdout, history=[(row, "cycle 1")],
                                 history_sources=report.sources(results), domain_of=lambda r: r)
    done = sql.finish_evaluation(db, row.id, decision=verdict.decision, reasons=verdict.reasons,
                                 summary={**summary, "holdout": holdout},
                                 report=folder.relative_to(home.root).as_posix())
    return done, folder


def test_a_report_is_markdown_self_contained_html_and_real_pngs(home: Home, db: Database) -> None:
    row, folder = _evaluate(home, db)
    assert folder == home.var / "reports" / str(row.id)
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == sorted(report.FIGURES)
    for name in pngs:
        with Image.open(folder / name) as img:
            assert img.format == "PNG" and img.size == SIZE
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    assert md.startswith("# Evaluation 1: scope@v2 against scope@v1 (scope)")
    assert "Decision: PROMOTE" in md and "To undo: cra adapters rollback scope" in md
    assert "| * scope recall@k | 1.000 | 0.250 | +0.750 | [+0.583, +0.917] | 6 | 1.000 | better |" in md
    assert "| steps to green | 2.000 | 3.000 | -1.000 |" in md and "| repeat-error rate | - |" in md
    for name in pngs:  # the Markdown links each figure, the HTML embeds it and links the file
        assert f"]({name})" in md
        assert f'href="{name}"' in html and f'data-file="{name}"' in html
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from anywhere
    # Every figure names the runs and calls it was drawn from.
    assert "candidate runs 10, 12, 14, 16" in md and "baseline runs 11, 13, 15" in md and "probe calls 100-115" in md
    assert "| domain: parsing | +0.500 |" in md
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["decision"] == "promote" and summary["sources"]["candidate runs"] == list(range(10, 26, 2))


def test_report_show_and_list_print_the_summary_and_the_undo_command(home: Home, db: Database, capsys) -> None:
    row, _ = _evaluate(home, db)
    assert main(["report", "show", str(row.id)]) == 0
    out = capsys.readouterr().out
    assert "scope recall@k" in out and "+0.750" in out and "better" in out
    assert "decision: PROMOTE (not applied)" in out and "to undo: cra adapters rollback scope" in out
    assert f"var/reports/{row.id}/report.html" in out
    assert main(["report", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["decision"] == "promote" and listed["primary"]["n"] == 6
    assert main(["report", "show", "7"]) == 2
    assert "no evaluation 7" in capsys.readouterr().err


def test_an_unfinished_evaluation_has_no_report_yet(home: Home, db: Database, capsys) -> None:
    row, _ = sql.start_evaluation(db, kind=EvalKind.CANDIDATE, slot="scope", candidate="scope@v2", baseline="base",
                                  candidate_version=2, baseline_version=None, cutoff_ts=0, params={},
                                  params_hash="x", holdout=TASKS, frozen=[], datasets=[])
    assert main(["report", "show", str(row.id)]) == 2
    assert "has not finished" in capsys.readouterr().err


@pytest.mark.parametrize(("ids", "text"), [([], "none"), ([3], "3"), ([1, 2, 3, 7, 9, 10], "1-3, 7, 9-10")])
def test_id_ranges(ids: list[int], text: str) -> None:
    assert id_ranges(ids) == text
