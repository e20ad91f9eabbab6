"""``cra harness ...``: validated tasks, agent runs and plan scores."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.base import App, cli, console, emit_json, err_console, pass_app, progress_bar
from appliance.status import AdapterAlias, RunStatus, TaskStatus, values

TIMEOUT_HELP = "Seconds one sandboxed pytest run may take (default: [harness] test_timeout_s, 300)."


def _limits(app: App, timeout: float | None):  # -> harness.sandbox.Limits
    """The sandbox limits of one test run: ``--timeout``, else ``[harness] test_timeout_s``.

    The CPU limit grows with a long timeout, so a slow suite is not killed by SIGXCPU first.
    """
    from harness.sandbox import Limits

    seconds = float(timeout) if timeout is not None else app.settings.harness.test_timeout_s
    return Limits(timeout_s=seconds, cpu_s=max(600, int(2 * seconds)))


@cli.group()
def harness() -> None:
    """Tasks from commits (validate), agent runs, and plan scoring."""


@harness.command("validate")
@click.argument("name")
@click.option("--commit", "shas", multiple=True, metavar="SHA", help="Only this kept commit (repeatable; a prefix works).")
@click.option("--limit", type=click.IntRange(min=1), help="Validate at most N commits this run.")
@click.option("--since", metavar="DATE", help="Only commits authored on or after DATE (YYYY-MM-DD).")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel checkouts (default: the number of cores).")
@click.option("--force", is_flag=True, help="Validate again commits that already have a task.")
@click.option("--supplement", is_flag=True,
              help="For commits that end no_fail_to_pass, ask the model for tests; keep only tests "
                   "that fail at the parent and pass at the commit.")
@click.option("--model", metavar="PATH", help="With --supplement: a GGUF model (or a served name with --endpoint).")
@click.option("--endpoint", metavar="URL", help="With --supplement: an OpenAI-compatible server.")
@click.option("--allow-weak-sandbox", is_flag=True,
              help="With --supplement: run the model's tests even where the sandbox cannot hide the host.")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS", help=TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the per-status counts as JSON.")
@pass_app
def harness_validate(app: App, name: str, shas: tuple[str, ...], limit: int | None, since: str | None,
                     workers: int | None, force: bool, supplement: bool, model: str | None,
                     endpoint: str | None, allow_weak_sandbox: bool, timeout: float | None,
                     as_json: bool) -> None:
    """Turn NAME's kept commits into validated tasks (FAIL_TO_PASS / PASS_TO_PASS), offline.

    Each commit runs its own test files in the sandbox at the parent with the commit's test
    changes, then with the whole commit (twice, to catch flaky tests). Resumable: a rerun
    continues where a crash or Ctrl-C stopped."""
    from harness.validation import ValidationOptions, validate_repo

    options = ValidationOptions(limits=_limits(app, timeout), allow_weak_sandbox=allow_weak_sandbox)
    generator = None
    if supplement:
        from appliance.llm.client import LLMClient
        from harness.testgen import ModelTestGenerator

        cfg = app.settings.llm.with_flags(model=model, endpoint=endpoint)
        if not cfg.configured:
            raise click.UsageError("--supplement needs a model: --model PATH, --endpoint URL or [llm] in cra.toml")
        generator = ModelTestGenerator(LLMClient.from_config(cfg, log=app.db))
    with progress_bar() as tick:
        counts = validate_repo(app.home, app.db, name, shas=list(shas) or None, limit=limit, since=since,
                               workers=workers, force=force, generator=generator, options=options,
                               lease_s=app.settings.harness.lease_s,
                               progress=lambda done, total, task: tick("validate", done, total))
    if as_json:
        emit_json(counts)
        return
    table = Table("status", "commits", title=f"{name}: this run")
    for status, n in counts.items():
        if n:
            table.add_row(status, str(n))
    console.print(table if any(counts.values()) else "nothing to validate: every kept commit has a task (use --force to redo)")


@harness.command("tasks")
@click.argument("name")
@click.option("--commit", "sha", metavar="SHA", help="Show this task whole (both patches and test lists).")
@click.option("--status", type=click.Choice(values(TaskStatus)),
              help="Only tasks with this status (with --format swebench: default valid).")
@click.option("--format", "fmt", type=click.Choice(["table", "swebench"]), default="table", show_default=True,
              help="swebench: JSONL with the fields SWE-bench, SWE-agent and mini-swe-agent read.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="With --format swebench: write the JSONL to this file (default: standard output).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def harness_tasks(app: App, name: str, sha: str | None, status: str | None, fmt: str, out: Path | None,
                  as_json: bool) -> None:
    """List NAME's tasks, show one whole with --commit, or write them in SWE-bench format."""
    from dataclasses import asdict

    from appliance.db.tasks import get_task, list_tasks, task_counts

    if fmt == "swebench":
        _tasks_swebench(app, name, status, out)
        return
    if out is not None:
        raise click.UsageError("--out goes with --format swebench")
    if sha:
        task = get_task(app.db, name, sha)
        if as_json:
            emit_json(asdict(task))
            return
        console.print(f"[bold]{task.sha}[/] {task.status}  {escape(task.instruction.splitlines()[0] if task.instruction else '')}")
        console.print(f"FAIL_TO_PASS ({len(task.fail_to_pass)}): " + ", ".join(task.fail_to_pass))
        console.print(f"PASS_TO_PASS ({len(task.pass_to_pass)}): " + ", ".join(task.pass_to_pass))
        if task.reason:
            console.print(f"reason: {escape(task.reason)}")
        console.print("[bold]test_patch[/]\n" + escape(task.test_patch) + "\n[bold]gold_patch[/]\n" + escape(task.gold_patch))
        return
    tasks = list_tasks(app.db, name, status=status)
    if as_json:
        emit_json([{k: v for k, v in asdict(t).items() if k not in {"test_patch", "gold_patch", "outcomes"}} for t in tasks])
        return
    counts = task_counts(app.db, name)
    table = Table("commit", "status", "F2P", "P2P", "instruction",
                  title=f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    for t in tasks:
        table.add_row(t.sha[:10], t.status, str(len(t.fail_to_pass)), str(len(t.pass_to_pass)),
                      escape((t.instruction.splitlines() or [""])[0][:70]))
    console.print(table if tasks else f"no tasks yet: run 'cra harness validate {name}'")


def _tasks_swebench(app: App, name: str, status: str | None, out: Path | None) -> None:
    from harness.swebench import export_instances, instances_jsonl, write_instances

    rows = export_instances(app.db, name, status=status or TaskStatus.VALID)
    if out is None:
        click.echo(instances_jsonl(rows), nl=False)
        return
    write_instances(out, rows)
    err_console.print(f"{len(rows)} SWE-bench instance(s) -> {escape(str(out))}")


@harness.command("check-instances")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--repo", "repo", metavar="NAME", help="The repo package the instances are for (default: from their repo field).")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS", help=TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_app
def harness_check_instances(app: App, file: Path, repo: str | None, timeout: float | None, as_json: bool) -> None:
    """Validate SWE-bench-format instances from FILE (JSONL) with cra's oracle and report, per
    instance, whether cra's FAIL_TO_PASS is the same as theirs, a subset, a superset or
    different, and why. The instances' repo must be a package imported here; offline."""
    from harness.swebench import check_instances
    from harness.validation import ValidationOptions

    options = ValidationOptions(limits=_limits(app, timeout))
    with progress_bar() as tick:
        results = check_instances(app.home, app.db, file, repo=repo, options=options,
                                  progress=lambda done, total, r: tick("check", done, total))
    if as_json:
        emit_json([r.to_dict() for r in results])
        return
    table = Table("instance", "agreement", "cra status", "F2P theirs", "F2P cra", "reason",
                  title=f"{file.name}: cra's oracle against the instances'")
    for r in results:
        table.add_row(escape(r.instance_id), r.agreement.value, r.cra_status or "-", str(len(r.theirs)),
                      str(len(r.cra)), escape(r.reason))
    console.print(table)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: give numbers separated by commas, e.g. 0.2,0.8") from exc


@harness.command("run")
@click.argument("name")
@click.option("--model", metavar="PATH", help="A GGUF model file for the in-process llama_cpp provider "
              "(with --endpoint: the model name the server serves).")
@click.option("--endpoint", metavar="URL", help="An OpenAI-compatible server (vLLM, llama-server), e.g. http://127.0.0.1:8000/v1.")
@click.option("--adapter", metavar="PATH|NAME", help="One LoRA for every stage: a GGUF path for llama_cpp, a served "
              "name for openai_compat.")
@click.option("--adapters", "alias", type=click.Choice(values(AdapterAlias)),
              help="Each stage uses its slot's registered version under this alias (plan -> plan, execute -> "
              "execute-code), verified first; with no model given, their base GGUF runs in process.")
@click.option("--temperatures", default="0.2", show_default=True, help="Comma-separated sampling temperatures; one run per task and temperature.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True, help="Runs per task and temperature.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True, help="Attempts per run (the first plus repairs).")
@click.option("--limit", type=click.IntRange(min=1), help="At most N tasks.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs at once, each in its own process and worktree slot: for a server that batches "
              "requests (vLLM, llama-server -np K). The in-process llama_cpp provider takes 1.")
@click.option("--allow-weak-sandbox", is_flag=True,
              help="Run the model's code even where the sandbox cannot hide the host (no bubblewrap); "
              "every run records the level it used.")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS", help=TIMEOUT_HELP)
@click.option("--force", is_flag=True, help="Run again the runs that already finished (resolved, failed, planned).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def harness_run(app: App, name: str, model: str | None, endpoint: str | None, adapter: str | None,
                alias: str | None, temperatures: str, samples: int, max_attempts: int, limit: int | None,
                workers: int, allow_weak_sandbox: bool, timeout: float | None, force: bool, as_json: bool) -> None:
    """Run the agent (index, retrieve, plan, execute, validate, repair) on NAME's valid tasks.

    Every LLM call, retrieval, plan (with its alignment score) and attempt is stored.
    With no model configured (no --model/--endpoint, no [llm] in cra.toml) it runs the
    retrieval planner only. Resumable: finished runs are skipped; runs that ended in an
    infrastructure error (server down, 5xx, timeouts after retries, a broken environment)
    are retried. A model server that cannot be reached at the start stops the command at
    once (exit 1)."""
    from appliance.llm.client import LLMClient
    from harness.candidate import EvalOptions
    from harness.pipeline import PipelineOptions, run_repo

    cfg = app.settings.llm.with_flags(model=model, endpoint=endpoint)
    routes = None
    if alias:
        if adapter:
            raise click.UsageError("--adapter and --adapters exclude each other")
        from appliance.adapters.routes import routes_for

        routes = routes_for(app.db, app.home, alias)
        bases = routes.base_ggufs()
        if not cfg.configured and len(bases) == 1:
            cfg = cfg.with_flags(model=bases.pop())
        elif not cfg.configured:
            raise click.UsageError(f"--adapters {alias} needs --model or --endpoint: the {alias} versions have "
                                   f"{'no base GGUF' if not bases else 'several base models'}")
        if not routes.targets and not as_json:
            err_console.print(f"no slot has a{'n' if alias == 'active' else ''} {alias} version: the base model runs")
    client = LLMClient.from_config(cfg, log=app.db, routes=routes) if cfg.configured else None
    if client is None and not as_json:
        err_console.print("no model configured: retrieval planner only, no execute stage")
    try:
        with progress_bar() as tick:
            summary = run_repo(app.home, app.db, name, client=client, temperatures=_floats(temperatures),
                               samples=samples, max_attempts=max_attempts, limit=limit, adapter=adapter,
                               workers=workers, force=force, lease_s=app.settings.harness.lease_s,
                               options=PipelineOptions(evaluation=EvalOptions(
                                   limits=_limits(app, timeout), allow_weak_sandbox=allow_weak_sandbox)),
                               progress=lambda done, total, run: tick("run", done, total))
    finally:
        if client is not None:
            client.close()
    if as_json:
        emit_json(summary)
        return
    table = Table("", "", title=f"{name}: {summary.get('mode')} runs")
    for key in ("tasks", "ran", "skipped", "runs", "by_status", "resolved_rate", "mean_attempts",
                "mean_steps_to_green", "mean_plan_score", "failure_kinds", "infra_errors"):
        if key in summary:
            table.add_row(key, escape(str(summary[key])))
    console.print(table)
    if summary.get("infra_errors"):
        err_console.print(f"[yellow]{summary['infra_errors']} run(s) hit an infrastructure error[/] (not counted "
                          f"in the resolved rate): run the same command again to retry them")


@harness.command("runs")
@click.argument("name")
@click.option("--status", type=click.Choice(values(RunStatus)), help="Only runs with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def harness_runs(app: App, name: str, status: str | None, as_json: bool) -> None:
    """List NAME's agent runs: model, adapter, temperature, status, attempts and failure kind."""
    from appliance.db.runs import list_runs

    runs = list_runs(app.db, name, status=status)
    if as_json:
        emit_json([r.to_dict() for r in runs])
        return
    table = Table("run", "commit", "model", "adapter", "temp", "sample", "status", "attempts", "failure")
    for r in runs:
        table.add_row(str(r.id), r.sha[:10], escape(r.model), escape(r.adapter), f"{r.temperature:g}", str(r.sample),
                      r.status, str(r.attempts), r.failure_kind or "")
    console.print(table if runs else f"no runs yet: run 'cra harness run {name}'")


@harness.command("show")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@pass_app
def harness_show(app: App, run_id: int, as_json: bool) -> None:
    """Print a run's full trace: retrieval, plan, edits and test output per attempt."""
    from appliance.db.runs import get_run_trace
    from harness.pipeline import trace_text

    trace = get_run_trace(app.db, run_id)
    if as_json:
        emit_json(trace.to_dict())
        return
    click.echo(trace_text(trace))


@harness.command("score")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def harness_score(app: App, name: str | None, as_json: bool) -> None:
    """Recompute the plan-diff alignment score of every stored plan (of NAME, or of all repos)."""
    from harness.triples import score_stored_plans

    data = score_stored_plans(app.db, app.home, name)
    if as_json:
        emit_json(data)
        return
    table = Table("plan", "commit", "source", "attempt", "score", "file F1", "symbol F1", "order",
                  title=f"plan alignment: {data['scored']} scored, mean {data['mean_score']}")
    for r in data["rows"]:
        table.add_row(str(r["id"]), r["sha"][:10], r["source"], str(r["attempt"]), f"{r['score']:.3f}",
                      f"{r['file_f1']:.3f}", f"{r['symbol_f1']:.3f}", f"{r['order']:.3f}")
    console.print(table if data["rows"] else "no plans stored yet: run 'cra triples build NAME' first")
    for e in data["errors"]:
        err_console.print(f"[yellow]plan {e['id']} ({e['sha'][:10]}) not scored:[/] {escape(e['error'])}")


