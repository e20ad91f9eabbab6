"""``var/reports/<id>/``: report.md, report.html (self-contained) and the PNGs behind them.

A report is read by a person in one screen: the decision first (and the one command that
undoes it), then per metric what improved, by how much and how sure (the paired interval
and the share of bootstrap resamples in which the candidate came out ahead), the frozen
set, the primary metric per repo and per domain, the learning curves over the slot's
evaluations (one per cycle), the gates, and where every number came from (run ids, LLM
call ids, the leakage check's datasets and rows).

Both files are made from one list of blocks (``Doc``), so they always say the same. The
HTML embeds each PNG as a data URI (it opens offline on its own, copied anywhere) and
links the file beside it; nothing is fetched from a network.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.atomic import write_atomic
from appliance.config import Home
from appliance.db.evaluation import EvaluationRow, Result
from appliance.evaluation import plots
from appliance.evaluation.metrics import LEARNING_CURVES, METRICS, STAGE_METRICS
from appliance.evaluation.stats import mean_interval
from appliance.status import EvalArm, EvalDecision, EvalKind

REPORT_VERSION = 1
FIGURES = ("metrics.png", "groups.png", "learning_curves.png", "stage_curves.png")


def report_dir(home: Home, evaluation_id: int) -> Path:
    return home.var / "reports" / str(evaluation_id)


# ------------------------------------------------------------------------------ wording


def verdict_of(entry: dict[str, Any] | None, higher_is_better: bool) -> str:
    """"better", "worse" (sure: the interval excludes zero), "likely better/worse", "same"."""
    if not entry:
        return "not measured"
    diff, low, high = entry["diff"], entry["low"], entry["high"]
    if diff == 0 and low == 0 and high == 0:
        return "same"
    good = diff > 0 if higher_is_better else diff < 0
    sure = low > 0 or high < 0
    word = "better" if good else "worse"
    return word if sure else f"likely {word}" if abs(entry.get("better", 0.5) - 0.5) >= 0.25 else "unclear"


def undo_command(row: EvaluationRow) -> str:
    """The one command that would undo what this evaluation did (or would do, if applied)."""
    if row.decision == EvalDecision.PROMOTE:
        return f"cra adapters rollback {row.slot}"
    if row.decision == EvalDecision.ROLLBACK and row.candidate_version is not None:
        return f"cra adapters promote {row.slot} v{row.candidate_version}"
    return "nothing to undo: the active version did not change"


def metric_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary table: one row per metric with a held-out difference, primary first."""
    out = []
    for name, entry in summary.get("metrics", {}).items():
        diff = entry.get("holdout")
        out.append({"metric": name, "label": entry["label"], "primary": name == summary.get("primary"),
                    "candidate": diff["candidate"] if diff else None, "baseline": diff["baseline"] if diff else None,
                    "diff": diff["diff"] if diff else None, "low": diff["low"] if diff else None,
                    "high": diff["high"] if diff else None, "n": diff["n"] if diff else 0,
                    "better": diff["better"] if diff else None,
                    "verdict": verdict_of(diff, entry["higher_is_better"]),
                    "higher_is_better": entry["higher_is_better"]})
    out.sort(key=lambda r: (not r["primary"], list(METRICS).index(r["metric"])))
    return out


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


# ------------------------------------------------------------------------------ document


@dataclass
class Doc:
    """A report as blocks, rendered to Markdown and to HTML."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, text: str) -> None:
        self.blocks.append(("h", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def items(self, lines: Sequence[str]) -> None:
        self.blocks.append(("ul", list(lines)))

    def table(self, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", (list(head), [[str(c) for c in r] for r in rows])))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", (path, caption)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "h":
                out += [f"## {value}", ""]
            elif kind == "p":
                out += [value, ""]
            elif kind == "code":
                out += ["```", value, "```", ""]
            elif kind == "ul":
                out += [f"- {line}" for line in value] + [""]
            elif kind == "table":
                head, rows = value
                out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
            elif kind == "img":
                path, caption = value
                out += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "h":
                body.append(f"<h2>{e(value)}</h2>")
            elif kind == "p":
                body.append(f"<p>{e(value)}</p>")
            elif kind == "code":
                body.append(f"<pre><code>{e(value)}</code></pre>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in value) + "</ul>")
            elif kind == "table":
                head, rows = value
                body.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
                            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                            + "</tbody></table>")
            elif kind == "img":
                path, caption = value
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{e(caption)}" '
                            f'data-file="{e(path.name)}"><figcaption>{e(caption)} '
                            f'(<a href="{e(path.name)}">{e(path.name)}</a>)</figcaption></figure>')
        style = ("body{font-family:sans-serif;max-width:1040px;margin:2em auto;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
                 "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
                 "pre{background:#f4f4f4;padding:8px}figcaption{font-size:smaller;color:#555}")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(self.title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ------------------------------------------------------------------------------ the report


def _side_values(results: Sequence[Result], metric: str, keys: set[tuple[str, str]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {EvalArm.CANDIDATE: [], EvalArm.BASELINE: []}
    for r in results:
        if r.metric == metric and r.value is not None and (r.repo, r.sha) in keys:
            out[r.arm].append(float(r.value))
    return out


def sources(results: Sequence[Result]) -> dict[str, list[int]]:
    """{"candidate runs": [...], "baseline runs": [...], "probe calls": [...]} behind the results."""
    out: dict[str, set[int]] = {"candidate runs": set(), "baseline runs": set(), "probe calls": set()}
    for r in results:
        out[f"{r.arm} runs"].update(int(i) for i in r.detail.get("run_ids", []))
        if r.detail.get("call_id") is not None:
            out["probe calls"].add(int(r.detail["call_id"]))
    return {k: sorted(v) for k, v in out.items()}


def source_line(evaluation_ids: Sequence[int], found: dict[str, list[int]]) -> str:
    what = [f"evaluation{'s' if len(evaluation_ids) > 1 else ''} {plots.id_ranges(evaluation_ids)}"]
    what += [f"{k} {plots.id_ranges(v)}" for k, v in found.items() if v]
    return "from " + "; ".join(what)


def curve_points(history: Sequence[tuple[EvaluationRow, str]]) -> list[dict[str, Any]]:
    """Learning-curve points from finished evaluations (with their labels, e.g. "cycle 2")."""
    points = []
    for row, label in history:
        metrics = {}
        for name, entry in row.summary.get("metrics", {}).items():
            diff = entry.get("holdout")
            if diff:
                metrics[name] = {"candidate": diff["candidate"], "baseline": diff["baseline"],
                                 "low": diff["low"], "high": diff["high"]}
        points.append({"label": label, "id": row.id, "metrics": metrics})
    return points


def write_report(
    home: Home, row: EvaluationRow, results: Sequence[Result], summary: dict[str, Any], *, reasons: Sequence[str],
    decision: str, holdout: dict[str, Any], history: Sequence[tuple[EvaluationRow, str]],
    history_sources: dict[str, list[int]], domain_of: Any,
) -> Path:
    """Write the report of ``row`` (decided, not yet stored as done); returns its folder.

    ``history``: the slot's finished evaluations before this one and this one last, with a
    label each, for the learning curves; ``history_sources``: the runs and calls behind them.
    """
    folder = report_dir(home, row.id)
    folder.mkdir(parents=True, exist_ok=True)
    row = _with(row, decision=decision)
    level = f"{summary.get('level', 0.95):.0%}"
    holdout_keys = set(row.holdout)
    frozen_keys = set(row.frozen)
    found = sources(results)
    here = source_line([row.id], found)
    doc = Doc(f"Evaluation {row.id}: {row.candidate} against {row.baseline} ({row.slot})")

    # ---- the decision, first
    applied = f" (applied: {row.applied})" if row.applied else ""
    headline = {EvalDecision.PROMOTE: "PROMOTE", EvalDecision.KEEP: "KEEP", EvalDecision.ROLLBACK: "ROLL BACK"}
    what = ("is the active version still better than the one before it?" if row.kind == EvalKind.REGRESSION
            else "should the candidate replace the baseline?")
    doc.p(f"Decision: {headline.get(decision, decision)}{applied}. The question: {what}")
    doc.items(reasons)
    doc.p(f"To undo: {undo_command(row)}")
    cutoff = holdout.get("cutoff", "")
    doc.table(["", ""], [
        ["held out", f"{len(holdout_keys)} tasks authored from {cutoff} on, {len({r for r, _ in holdout_keys})} repo(s)"],
        ["frozen regression set", f"{len(frozen_keys)} tasks, the same on every evaluation"],
        ["leakage check", (f"{holdout.get('rows_checked', 0)} training rows of dataset(s) "
                           f"{', '.join(map(str, holdout.get('datasets', []))) or 'none'}: none from a held-out or "
                           "frozen task, by commit or by content")],
        ["power", (f"{len(holdout_keys)} tasks detect differences of about {holdout['detectable']:.2f}; "
                   f"{row.params.get('effect', 0):g} would need {holdout.get('needed')}")
         if holdout.get("detectable") is not None else "-"],
        ["how", (f"{row.params.get('model', '?')}; temperature {row.params.get('temperature')}, "
                 f"{row.params.get('samples')} run(s) per task and side, the same seeds on both sides")],
    ])

    # ---- per metric
    table = metric_rows(summary)
    doc.h("What changed on the held-out tasks")
    doc.table(["metric", "candidate", "baseline", "difference", f"{level} interval", "tasks", "P(better)", "verdict"],
              [[("* " if r["primary"] else "") + r["label"], _num(r["candidate"]), _num(r["baseline"]),
                _num(r["diff"], True), f"[{_num(r['low'], True)}, {_num(r['high'], True)}]" if r["n"] else "-",
                r["n"], _num(r["better"]) if r["better"] is not None else "-", r["verdict"]] for r in table])
    doc.p("* the primary metric, which the gate reads. P(better): the share of bootstrap resamples in which the "
          "candidate's mean difference was above zero. A metric where lower is better (steps to green, "
          "repeat-error rate) is better when the difference is negative.")
    plotted = []
    for r in table:
        if not r["n"]:
            continue
        values = _side_values(results, r["metric"], holdout_keys)
        cand = mean_interval(values[EvalArm.CANDIDATE]) or (0.0, 0.0, 0.0)
        base = mean_interval(values[EvalArm.BASELINE]) or (0.0, 0.0, 0.0)
        plotted.append({"label": r["label"], "primary": r["primary"], "candidate": cand, "baseline": base,
                        "diff": (r["diff"], r["low"], r["high"]), "higher_is_better": r["higher_is_better"],
                        "bounded": not METRICS[r["metric"]].unit})
    fig = plots.metrics(folder / "metrics.png", plotted, title=f"{row.candidate} vs {row.baseline}: held-out tasks",
                        source=here)
    doc.image(fig, f"Per metric, each side's mean and the paired difference with {level} intervals ({here})")

    # ---- frozen set
    doc.h("Frozen regression set")
    frozen_rows = [[entry["label"], _num(d["candidate"]), _num(d["baseline"]), _num(d["diff"], True), d["n"]]
                   for entry in summary.get("metrics", {}).values() if (d := entry.get("frozen"))]
    if frozen_rows:
        doc.table(["metric", "candidate", "baseline", "difference", "tasks"], frozen_rows)
    else:
        doc.p("No frozen task was measured on both sides.")

    # ---- per repo and per domain
    primary = summary.get("primary", "")
    entry = summary.get("metrics", {}).get(primary, {})
    doc.h(f"Per repo and per domain: {METRICS[primary].label if primary in METRICS else primary}")
    group_rows = [[f"{what}: {g}", _num(d["diff"], True), f"[{_num(d['low'], True)}, {_num(d['high'], True)}]", d["n"]]
                  for what, table_ in (("repo", entry.get("by_repo", {})), ("domain", entry.get("by_domain", {})))
                  for g, d in table_.items() if d]
    doc.table(["group", "difference", f"{level} interval", "tasks"], group_rows or [["-", "-", "-", 0]])
    fig = plots.groups(folder / "groups.png", [("per repo", entry.get("by_repo", {})),
                                               ("per domain", entry.get("by_domain", {}))],
                       title=f"{METRICS[primary].label if primary in METRICS else primary}: candidate - baseline",
                       source=here)
    doc.image(fig, f"The primary metric's paired difference per repo and per domain ({here})")

    # ---- over cycles
    doc.h("Over cycles")
    points = curve_points(history)
    ids = [p["id"] for p in points]
    past = source_line(ids, history_sources)
    doc.p(f"Each point is one evaluation of the {row.slot} slot ({len(points)} so far), both sides' means on its "
          "held-out tasks.")
    fig = plots.curves(folder / "learning_curves.png", points, [str(m) for m in LEARNING_CURVES],
                       title=f"{row.slot}: learning curves (seed 002)", source=past)
    doc.image(fig, f"Pass rate, steps to green and repeat-error rate over evaluations ({past})")
    fig = plots.curves(folder / "stage_curves.png", points, [m.name for m in STAGE_METRICS],
                       title=f"{row.slot}: stage metrics", source=past)
    doc.image(fig, f"Stage metrics (Gate 1) over evaluations ({past})")

    # ---- provenance
    doc.h("Where the numbers come from")
    doc.items([f"{k}: {plots.id_ranges(v)}" for k, v in found.items()]
              + [f"held-out tasks: {', '.join(f'{r}@{s[:10]}' for r, s in sorted(holdout_keys))}",
                 f"frozen tasks: {', '.join(f'{r}@{s[:10]}' for r, s in sorted(frozen_keys)) or 'none'}",
                 f"domains: {', '.join(sorted({f'{r}: {domain_of(r)}' for r, _ in holdout_keys}))}"])
    doc.code(f"cra harness show RUN_ID    # a run's full trace\ncra report show {row.id} --json")

    write_atomic(folder / "report.md", doc.markdown())
    write_atomic(folder / "report.html", doc.html())
    write_atomic(folder / "summary.json", json.dumps(
        {"version": REPORT_VERSION, "evaluation": row.id, "decision": decision, "reasons": list(reasons),
         "undo": undo_command(row), "holdout": holdout, "summary": summary, "sources": found},
        indent=2, sort_keys=True) + "\n")
    return folder


def _with(row: EvaluationRow, **changes: Any) -> EvaluationRow:
    from dataclasses import replace

    return replace(row, **changes)
