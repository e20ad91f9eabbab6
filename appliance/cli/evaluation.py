"""``cra eval`` and ``cra report list|show``: judge a candidate adapter, read what was decided."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.base import App, cli, console, emit_json, err_console, pass_app, progress_bar
from appliance.db.evaluation import EvaluationRow
from appliance.errors import BadInput
from appliance.llm import LLMClient
from appliance.status import AdapterSlot, EvalDecision, EvalKind, values


def parse_day(text: str | None, what: str = "--cutoff") -> int | None:
    """YYYY-MM-DD (UTC midnight) as epoch seconds."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadInput(f"{what} {text!r} is not a date", hint="use YYYY-MM-DD") from exc
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


COLORS = {"better": "green", "likely better": "green", "worse": "red", "likely worse": "red"}


def print_summary(row: EvaluationRow) -> None:
    """The summary a person reads: what improved, by how much, how sure, the decision, the undo."""
    from appliance.evaluation.report import metric_rows, undo_command

    summary = row.summary
    level = f"{summary.get('level', 0.95):.0%}"
    held = summary.get("holdout", {})
    table = Table("metric", "candidate", "baseline", "difference", f"{level} interval", "tasks", "P(better)",
                  "verdict", title=f"evaluation {row.id}: {escape(row.candidate)} vs {escape(row.baseline)} "
                                   f"({row.slot}, {summary.get('holdout_tasks', 0)} held-out tasks from "
                                   f"{held.get('cutoff', '?')})")
    for r in metric_rows(summary):
        color = COLORS.get(r["verdict"], "")
        verdict = f"[{color}]{r['verdict']}[/]" if color else r["verdict"]
        table.add_row(("* " if r["primary"] else "") + r["label"], _num(r["candidate"]), _num(r["baseline"]),
                      _num(r["diff"], True),
                      f"[{_num(r['low'], True)}, {_num(r['high'], True)}]" if r["n"] else "-", str(r["n"]),
                      _num(r["better"]) if r["better"] is not None else "-", verdict)
    console.print(table)
    decision = (row.decision or "?").upper()
    color = {"PROMOTE": "green", "ROLLBACK": "red"}.get(decision, "yellow")
    applied = f" (applied: {row.applied})" if row.applied else (" (not applied)" if decision != "KEEP" else "")
    console.print(f"decision: [bold {color}]{decision}[/]{applied}")
    for reason in row.reasons:
        console.print(f"  {escape(reason)}")
    console.print(f"to undo: [bold]{escape(undo_command(row))}[/]")
    if row.report:
        console.print(f"report: {row.report}/report.html (and report.md)")


@cli.command("eval")
@click.option("--candidate", required=True, metavar="SLOT:vN",
              help="The version to judge: SLOT:vN, SLOT:candidate (the last trained), SLOT:active (a regression "
                   "check against the version before it).")
@click.option("--baseline", metavar="REF",
              help="active (default), previous (the version active before the active one), base (no adapter), "
                   "or SLOT:vM.")
@click.option("--cutoff", metavar="DATE", help="Hold out tasks authored from DATE on (YYYY-MM-DD; default: the "
                                               "training data's cutoff; never earlier).")
@click.option("--samples", type=click.IntRange(min=1), help="Pipeline runs per task and side (default [evaluation] samples).")
@click.option("--repo", "repos", multiple=True, help="Only tasks of this repo package (repeatable).")
@click.option("--promote", is_flag=True, help="Apply a promote decision through the registry (a rollback of a "
                                              "regressed active version is always applied, unless [evaluation] "
                                              "rollback = false).")
@click.option("--model", metavar="PATH", help="A GGUF model (default: [llm], else the adapters' base GGUF).")
@click.option("--endpoint", metavar="URL", help="An OpenAI-compatible server serving the adapters by name.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@pass_app
def eval_cmd(app: App, candidate: str, baseline: str | None, cutoff: str | None, samples: int | None,
             repos: tuple[str, ...], promote: bool, model: str | None, endpoint: str | None, as_json: bool) -> None:
    """Judge an adapter version on tasks from after its training data's cutoff.

    Candidate and baseline run on the same held-out tasks with the same seeds: every stage
    on its own (scope recall, symbol recall, step/meta/test plan alignment, apply rate) and,
    with [evaluation] end_to_end, the whole pipeline (resolved rate, pass@k, steps to green,
    repeat-error rate). Every difference gets a paired bootstrap interval; the gates in
    [evaluation] decide. Refused when a training row touches a held-out or frozen task, or
    when the holdout is smaller than [evaluation] min_holdout. Resumable: the same command
    after a crash or Ctrl-C continues. The report: var/reports/<id>/ (cra report show ID).
    """
    from appliance.evaluation import evaluate
    from appliance.evaluation.sides import resolve

    settings = app.settings
    if samples is not None:
        settings.evaluation.samples = samples
        settings.evaluation.pass_k = min(settings.evaluation.pass_k, samples)
    resolved = resolve(app.db, app.home, candidate, baseline)
    client = eval_client(app, model, endpoint, resolved.candidate.base_ggufs() | resolved.baseline.base_ggufs())
    request = evaluate.Request(resolved.slot, resolved.candidate, resolved.baseline, kind=resolved.kind,
                               cutoff_ts=parse_day(cutoff), repos=repos or None)
    if not as_json and resolved.kind == EvalKind.REGRESSION:
        err_console.print(f"{candidate} is the active version: checking it against {request.baseline.key}")
    with progress_bar() as tick:
        outcome = evaluate.run(app.home, app.db, settings, request, client=client,
                               client_for=evaluate.routed_clients(client, app.db, app.home), promote=promote,
                               progress=tick)
    if as_json:
        emit_json(outcome.to_dict())
        return
    if outcome.resumed:
        err_console.print(f"resumed evaluation {outcome.evaluation.id}")
    for note in outcome.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    print_summary(outcome.evaluation)
    if outcome.verdict.decision == EvalDecision.PROMOTE and not outcome.applied:
        console.print(f"to promote: cra eval --candidate {candidate} --promote  (or cra adapters promote "
                      f"{resolved.slot} v{outcome.evaluation.candidate_version})")


def eval_client(app: App, model: str | None, endpoint: str | None, bases: set[str]) -> LLMClient:
    """The model an evaluation asks: the flags, else [llm], else the one base GGUF the adapters share."""
    cfg = app.settings.llm.with_flags(model=model, endpoint=endpoint)
    if not cfg.configured:
        if len(bases) != 1:
            raise click.UsageError("no model to evaluate with: give --model PATH or --endpoint URL (or [llm] in "
                                   "cra.toml)" + ("; the adapters have several base models" if bases else ""))
        cfg = cfg.with_flags(model=next(iter(bases)))
    return LLMClient.from_config(cfg, log=app.db)


@cli.group()
def report() -> None:
    """Evaluation reports: var/reports/<id>/report.md, report.html and their figures."""


@report.command("list")
@click.option("--slot", type=click.Choice(values(AdapterSlot)),
              help="Only this slot's evaluations.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def report_list(app: App, slot: str | None, as_json: bool) -> None:
    """Every evaluation: when, which versions, the primary metric's difference, the decision."""
    from appliance.db.evaluation import list_evaluations

    rows = list_evaluations(app.db, slot=slot)
    if as_json:
        emit_json([{"id": r.id, "kind": r.kind, "slot": r.slot, "candidate": r.candidate, "baseline": r.baseline,
                    "status": r.status, "decision": r.decision, "applied": r.applied, "report": r.report,
                    "created_at": r.created_at,
                    "primary": (r.summary.get("metrics", {}).get(r.summary.get("primary", ""), {}) or {}).get("holdout")}
                   for r in rows])
        return
    if not rows:
        console.print("no evaluation yet: cra eval --candidate SLOT:vN")
        return
    table = Table("id", "when", "slot", "candidate", "baseline", "tasks", "primary", "difference", "decision", "report")
    for r in rows:
        primary = r.summary.get("primary", "")
        diff = (r.summary.get("metrics", {}).get(primary, {}) or {}).get("holdout")
        shown = (f"{diff['diff']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]" if diff else "-")
        decision = r.decision or r.status
        table.add_row(str(r.id), r.created_at[:16].replace("T", " "), r.slot, escape(r.candidate), escape(r.baseline),
                      str(len(r.holdout)), primary, shown, decision + (f" ({r.applied})" if r.applied else ""),
                      r.report or "-")
    console.print(table)


@report.command("show")
@click.argument("evaluation_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the whole evaluation (summary, gates) as JSON.")
@pass_app
def report_show(app: App, evaluation_id: int, as_json: bool) -> None:
    """One evaluation's summary: what improved, by how much, how sure, the decision, how to undo it."""
    from appliance.db.evaluation import get_evaluation
    from appliance.evaluation.report import undo_command

    row = get_evaluation(app.db, evaluation_id)
    if as_json:
        emit_json({**row.to_dict(), "undo": undo_command(row)})
        return
    if not row.done:
        raise BadInput(f"evaluation {row.id} has not finished",
                       hint="run the same cra eval (or cra cycle) command again to resume it")
    print_summary(row)


@cli.command("cycle")
@click.option("--slot", required=True, type=click.Choice(values(AdapterSlot)), help="The adapter slot to improve.")
@click.option("--cycles", type=click.IntRange(min=1), default=1, show_default=True, help="Cycles to run.")
@click.option("--cutoff", metavar="DATE", help="Train on commits before DATE, hold out the rest (default: the "
                                               "latest [evaluation] holdout_share of validated tasks is held out).")
@click.option("--model", metavar="PATH", help="A GGUF model (default: [llm] in cra.toml).")
@click.option("--endpoint", metavar="URL", help="An OpenAI-compatible server.")
@click.option("--json", "as_json", is_flag=True, help="Print the cycles as JSON.")
@pass_app
def cycle_cmd(app: App, slot: str, cycles: int, cutoff: str | None, model: str | None, endpoint: str | None,
              as_json: bool) -> None:
    """Day -> sleep -> eval, CYCLES times: run the pipeline on the tasks not yet run with the active
    adapters, make a training plan, curate SLOT's data, train a candidate, evaluate it against the
    active version on the held-out tasks, and promote it or keep the active one.

    Each cycle is a row (cra report list shows its evaluation); the learning curves of every
    report cover all cycles. Ctrl-C and the same command again resume where it stopped."""
    from appliance.db.evaluation import get_evaluation
    from appliance.evaluation import evaluate
    from appliance.evaluation.cycle import run_cycles

    client = eval_client(app, model, endpoint, set())
    with progress_bar() as tick:
        outcome = run_cycles(app.home, app.db, app.settings, slot, cycles=cycles, client=client,
                             cutoff_ts=parse_day(cutoff), client_for=evaluate.routed_clients(client, app.db, app.home),
                             progress=tick)
    if as_json:
        emit_json(outcome.to_dict())
        return
    table = Table("cycle", "cutoff", "day runs", "plan", "dataset", "version", "evaluation", "decision", "note",
                  title=f"{slot}: cycles")
    for c in outcome.cycles:
        runs = sum(int(v.get("ran", 0)) for v in c.day.values())
        table.add_row(str(c.number), c.params.get("cutoff", ""), str(runs), str(c.plan_id or "-"),
                      str(c.dataset_id or "-"), f"v{c.version}" if c.version else "-", str(c.evaluation_id or "-"),
                      c.decision or "-", escape(c.note or ""))
    console.print(table)
    last = next((c for c in reversed(outcome.cycles) if c.evaluation_id), None)
    if last is not None:
        print_summary(get_evaluation(app.db, last.evaluation_id))
