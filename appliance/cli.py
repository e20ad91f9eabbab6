"""The ``cra`` command line: parse arguments, call the library, print with rich.

This is the only module that knows about the terminal. Library errors (``CraError``)
become one red line and an exit code: 0 done, 1 failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from appliance.config import Home, Settings, load_settings
from appliance.errors import CraError

console = Console()
err_console = Console(stderr=True)


@dataclass
class App:
    """What every command needs, opened lazily so ``--help`` never touches the DB."""

    home: Home
    _settings: Settings | None = None
    _db: Any = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.home)
        return self._settings

    @property
    def db(self) -> Any:
        if self._db is None:
            from appliance.db.core import Database

            self._db = Database(self.home.db_path)
            self.cleanup.append(self._db.close)
        return self._db


pass_app = click.make_pass_decorator(App)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar fed by ``progress(step, done, total)`` callbacks from the library."""
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, transient=False,
        disable=not err_console.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def update(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total or None)
        bar.update(tasks[step], completed=done, total=total or None)

    with bar:
        yield update


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), envvar="CRA_HOME",
    help="State folder (corpus/, packages/, manifests/, adapters/, var/). Default: $CRA_HOME or the current directory.",
)
@click.version_option(package_name="cra", prog_name="cra", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """cra: mine real git history into coding tasks, run a local agent on them, and train
    adapters from what it did. Runs offline; only `cra corpus add` uses the network."""
    app = App(Home.from_env(home))
    ctx.obj = app
    ctx.call_on_close(lambda: [f() for f in app.cleanup])


# --------------------------------------------------------------------------- doctor


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Show what is installed, which optional parts work, and where state lives."""
    from appliance.doctor import report

    data = report(app.home, app.settings)
    if as_json:
        emit_json(data)
        return
    console.print(f"[bold]cra {data['cra']}[/]  python {data['python']}")
    console.print(f"home    {data['home']}\nconfig  {data['config']}")
    db = data["db"]
    assert isinstance(db, dict)
    state = f"schema v{db['schema_version']}" if db.get("exists") else "not created yet"
    console.print(f"db      {db['path']} ({state})")
    table = Table("part", "status", "detail", "install", title="tools and optional parts")
    for row in [*data["tools"], *data["optional"]]:  # type: ignore[misc]
        mark = "[green]ok[/]" if row["ok"] else "[yellow]missing[/]" if row["extra"] else "[red]warn[/]"
        table.add_row(row["name"], mark, escape(row["detail"]), escape(row["hint"]))
    console.print(table)


# --------------------------------------------------------------------------- corpus


@cli.group()
def corpus() -> None:
    """Repo packages: add (connected side), export to USB, import (air-gapped side)."""


@corpus.command("add")
@click.argument("source", required=False)
@click.option("--name", help="Name of the repo package (default: from SOURCE).")
@click.option("--test-cmd", help="Command that runs the tests (default: python -m pytest).")
@click.option("--python", "python", metavar="X.Y", help="Python version of the air-gapped box (default: this one).")
@click.option("--from-catalog", "catalog_name", metavar="NAME", help="Take URL and hints from corpus/catalog.toml.")
@click.option("--find-links", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A local wheel folder to use (repeatable).")
@click.option("--no-index", is_flag=True, help="Use only --find-links folders, never a package index.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def corpus_add(
    app: App, source: str | None, name: str | None, test_cmd: str | None, python: str | None,
    catalog_name: str | None, find_links: tuple[Path, ...], no_index: bool, as_json: bool,
) -> None:
    """Turn SOURCE (a git URL or local path) into a repo package.

    Clones with full history into corpus/NAME/repo, mines and filters every commit on the
    default branch, locks the dependencies of every dependency era, downloads their wheels
    into packages/NAME/ and proves them installable offline, then writes manifests/NAME.json
    and registers everything in the database. Needs the network unless --no-index.
    """
    from appliance.corpus import add_repo

    if catalog_name:
        from appliance.catalog import find_entry

        entry = find_entry(catalog_name)
        source = source or entry.url
        name = name or entry.name
        test_cmd = test_cmd or getattr(entry, "test_cmd", None)
    if not source:
        raise click.UsageError("give SOURCE or --from-catalog NAME")
    settings = app.settings
    if find_links:
        settings.packaging.find_links = [str(p.resolve()) for p in find_links] + settings.packaging.find_links
    if no_index:
        settings.packaging.no_index = True
    with progress_bar() as tick:
        result = add_repo(app.home, app.db, settings, source, name=name, test_cmd=test_cmd, python=python, progress=tick)
    if as_json:
        emit_json({
            "name": result.name, "commits": result.commits, "kept": result.kept, "wheels": result.wheels,
            "manifest": str(result.manifest),
            "eras": [{"key": e.key[:12], "status": e.status, "commits": len(e.commits), "error": e.error} for e in result.eras],
        })
        return
    console.print(
        f"[green]added[/] {result.name}: {result.commits} commits, {result.kept} kept, "
        f"{len(result.eras)} dependency eras, {result.wheels} wheels -> {result.manifest}"
    )
    for era in result.unresolvable:
        err_console.print(f"[yellow]era {era.key[:12]} ({len(era.commits)} commits) unresolvable:[/] {escape(era.error or '')}")


@corpus.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def corpus_list(app: App, as_json: bool) -> None:
    """List the repo packages in the database."""
    from appliance.db.corpus import list_repos

    rows = list_repos(app.db)
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "commits", "kept", "eras", "python", "source", "head", "origin")
    for r in rows:
        table.add_row(r["name"], str(r["commits"]), str(r["kept"]), str(r["eras"]), r["python_version"],
                      r["source"], r["head_sha"][:10], r["origin_url"])
    console.print(table if rows else "no repo packages yet: add one with 'cra corpus add SOURCE'")


@corpus.command("funnel")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def corpus_funnel(app: App, name: str, as_json: bool) -> None:
    """Show how many commits each filter stage rejected, and why."""
    from appliance.db.corpus import funnel

    data = funnel(app.db, name)
    if as_json:
        emit_json(data)
        return
    print_funnel(data)


def print_funnel(data: dict[str, Any]) -> None:
    table = Table("stage", "entered", "rejected", "left", title=f"{data['repo']}: commit funnel")
    for s in data["stages"]:
        table.add_row(s["stage"], str(s["entered"]), str(s["rejected"]), str(s["left"]))
    table.add_row("[bold]kept[/]", "", "", f"[bold]{data['kept']}[/] ({data['kept_pct']}%)")
    console.print(table)
    if data["reasons"]:
        reasons = Table("stage", "reason", "commits", title="rejection reasons")
        for r in data["reasons"]:
            reasons.add_row(r["stage"], r["reason"], str(r["n"]))
        console.print(reasons)


@corpus.command("export")
@click.argument("names", nargs=-1, required=True)
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Destination folder, e.g. the USB stick's mount point.")
@click.option("--with-appliance", is_flag=True,
              help="Also write a wheelhouse that installs cra itself (with its llama extra) offline.")
@pass_app
def corpus_export(app: App, names: tuple[str, ...], dest: Path, with_appliance: bool) -> None:
    """Write repo packages to DEST: git bundle, wheels, locks, manifest and SHA256SUMS."""
    from appliance.bundle import export_appliance, export_package
    from appliance.db.corpus import get_repo

    for name in names:
        get_repo(app.db, name)  # a clear error before any file is written
    with progress_bar() as tick:
        for name in names:
            result = export_package(app.home, name, dest, progress=lambda d, t, n=name: tick(n, d, t))
            console.print(f"[green]exported[/] {name} -> {result.path} ({result.written} written, {result.skipped} unchanged)")
        if with_appliance:
            path = export_appliance(dest)
            console.print(f"[green]appliance wheelhouse[/] -> {path}")


@corpus.command("import")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@pass_app
def corpus_import(app: App, src: Path) -> None:
    """Verify and import repo packages from SRC (a package folder or a USB root). Never uses the network."""
    from appliance.bundle import import_package

    with progress_bar() as tick:
        result = import_package(app.home, src, app.db, progress=lambda done, total: tick("verify", done, total))
    for p in result.packages:
        what = "unchanged" if p.status == "unchanged" else "replaced" if p.replaced else "imported"
        console.print(f"[green]{what}[/] {p.name}: {p.kept} kept + {p.rejected} rejected commits, "
                      f"{p.eras} eras, {p.wheels} wheels (HEAD {p.head_sha[:10]})")


@corpus.command("catalog")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def corpus_catalog(as_json: bool) -> None:
    """Show the repos of corpus/catalog.toml (url, domain, roles, tier)."""
    from dataclasses import asdict

    from appliance.catalog import load_catalog

    entries = load_catalog()
    if as_json:
        emit_json([asdict(e) for e in entries])
        return
    table = Table("name", "tier", "roles", "domain", "url", title="corpus catalog")
    for e in entries:
        table.add_row(e.name, e.tier, "".join(e.roles), e.domain, e.url)
    console.print(table)


# --------------------------------------------------------------------------- harness


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
@click.option("--json", "as_json", is_flag=True, help="Print the per-status counts as JSON.")
@pass_app
def harness_validate(app: App, name: str, shas: tuple[str, ...], limit: int | None, since: str | None,
                     workers: int | None, force: bool, supplement: bool, model: str | None,
                     endpoint: str | None, as_json: bool) -> None:
    """Turn NAME's kept commits into validated tasks (FAIL_TO_PASS / PASS_TO_PASS), offline.

    Each commit runs its own test files in the sandbox at the parent with the commit's test
    changes, then with the whole commit (twice, to catch flaky tests). Resumable: a rerun
    continues where a crash or Ctrl-C stopped."""
    from harness.validation import validate_repo

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
                               workers=workers, force=force, generator=generator,
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
@click.option("--status", help="Only tasks with this status (valid, no_fail_to_pass, env_error, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def harness_tasks(app: App, name: str, sha: str | None, status: str | None, as_json: bool) -> None:
    """List NAME's tasks, or show one whole with --commit."""
    from dataclasses import asdict

    from appliance.db.tasks import get_task, list_tasks, task_counts

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
@click.option("--adapter", metavar="SLOT", help="LoRA adapter: a GGUF path for llama_cpp, a served name for openai_compat.")
@click.option("--temperatures", default="0.2", show_default=True, help="Comma-separated sampling temperatures; one run per task and temperature.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True, help="Runs per task and temperature.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True, help="Attempts per run (the first plus repairs).")
@click.option("--limit", type=click.IntRange(min=1), help="At most N tasks.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs at once, each in its own process and worktree slot: for a server that batches "
              "requests (vLLM, llama-server -np K). The in-process llama_cpp provider takes 1.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def harness_run(app: App, name: str, model: str | None, endpoint: str | None, adapter: str | None,
                temperatures: str, samples: int, max_attempts: int, limit: int | None, workers: int,
                as_json: bool) -> None:
    """Run the agent (index, retrieve, plan, execute, validate, repair) on NAME's valid tasks.

    Every LLM call, retrieval, plan (with its alignment score) and attempt is stored.
    With no model configured (no --model/--endpoint, no [llm] in cra.toml) it runs the
    retrieval planner only. Resumable: finished runs are skipped."""
    from appliance.llm.client import LLMClient
    from harness.pipeline import run_repo

    cfg = app.settings.llm.with_flags(model=model, endpoint=endpoint)
    client = LLMClient.from_config(cfg, log=app.db) if cfg.configured else None
    if client is None and not as_json:
        err_console.print("no model configured: retrieval planner only, no execute stage")
    try:
        with progress_bar() as tick:
            summary = run_repo(app.home, app.db, name, client=client, temperatures=_floats(temperatures),
                               samples=samples, max_attempts=max_attempts, limit=limit, adapter=adapter,
                               workers=workers, progress=lambda done, total, run: tick("run", done, total))
    finally:
        if client is not None:
            client.close()
    if as_json:
        emit_json(summary)
        return
    table = Table("", "", title=f"{name}: {summary.get('mode')} runs")
    for key in ("tasks", "ran", "skipped", "runs", "by_status", "resolved_rate", "mean_attempts",
                "mean_steps_to_green", "mean_plan_score", "failure_kinds"):
        if key in summary:
            table.add_row(key, escape(str(summary[key])))
    console.print(table)


@harness.command("runs")
@click.argument("name")
@click.option("--status", help="Only runs with this status (resolved, failed, planned, error, running).")
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


# --------------------------------------------------------------------------- triples


@cli.group()
def triples() -> None:
    """SFT and DPO triples: build them from tasks and runs, count them, export them as JSONL."""


@triples.command("build")
@click.argument("name")
@click.option("--status", "statuses", multiple=True, default=("valid",), show_default=True,
              help="Task statuses to learn from (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def triples_build(app: App, name: str, statuses: tuple[str, ...], as_json: bool) -> None:
    """Build NAME's triples: gold-derived ones (scope, precision, plan, execute) and gold plans from
    its tasks, and run-derived SFT (resolved attempts) and DPO pairs from its model runs.

    No model needed for the gold part: the commit is the teacher. Safe to rerun
    (duplicates are skipped)."""
    from harness.triples import build_from_runs, build_gold

    report = build_gold(app.db, app.home, name, statuses=statuses).to_dict()
    report["from_runs"] = build_from_runs(app.db, name)
    if as_json:
        emit_json(report)
        return
    runs = report["from_runs"]
    console.print(f"[green]{name}[/]: {report['tasks']} tasks -> {report['triples']} new gold triples "
                  f"({report['duplicates']} already stored), {report['plans']} gold plans; "
                  f"{runs['runs']} model runs -> {runs['sft']} SFT + {runs['dpo']} DPO ({runs['added']} new)")
    for e in report["errors"]:
        err_console.print(f"[yellow]{e.get('sha', '')[:10]}:[/] {escape(str(e.get('error', '')))}")


@triples.command("stats")
@click.option("--repo", help="Only this repo package.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def triples_stats(app: App, repo: str | None, as_json: bool) -> None:
    """Count the stored triples by stage and kind."""
    from harness.triples import stats

    data = stats(app.db, repo=repo)
    if as_json:
        emit_json(data)
        return
    table = Table("stage", "sft", "dpo", title=f"triples: {data['total']} "
                  f"(gold {data['by_origin'].get('gold', 0)}, run {data['by_origin'].get('run', 0)})")
    for stage, kinds in data["by_stage"].items():
        table.add_row(stage, str(kinds.get("sft", 0)), str(kinds.get("dpo", 0)))
    console.print(table)


@triples.command("export")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for <stage>.<kind>.jsonl files and manifest.json.")
@click.option("--format", "sft_format", type=click.Choice(["messages", "prompt_completion"]), default="messages",
              show_default=True, help="Shape of SFT rows (trl reads both).")
@click.option("--repo", help="Only this repo package.")
@click.option("--before", metavar="DATE", help="Only triples from commits authored before DATE (YYYY-MM-DD).")
@pass_app
def triples_export(app: App, out: Path, sft_format: str, repo: str | None, before: str | None) -> None:
    """Write the triples as JSONL that datasets.load_dataset("json", ...) and trl load."""
    from harness.triples import export
    from harness.validation import parse_since

    manifest = export(app.db, out, sft_format=sft_format, repo=repo, before_ts=parse_since(before))
    for name, f in manifest["files"].items():
        console.print(f"{out / name}: {f['rows']} rows")
    if not manifest["files"]:
        console.print("no triples to export: run 'cra triples build NAME' first")


# --------------------------------------------------------------------------- demo


@cli.command()
@click.option("--wheels", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Local wheel folder for the sample's dependencies (default: .cache/wheels, filled by scripts/bootstrap.sh).")
@click.pass_context
def demo(ctx: click.Context, wheels: Path | None) -> None:
    """The main job, end to end with no network: package the bundled sample repo, export it
    as a USB bundle, import it into a fresh air-gapped home and print its funnel."""
    from appliance.demo import run_demo

    app: App = ctx.obj
    with progress_bar() as tick:
        result = run_demo(app.home, wheels=wheels, progress=tick)
    console.print(f"connected home: {result.connected_home}\nUSB folder:     {result.usb}\nair-gapped home: {result.airgapped_home}")
    print_funnel(result.funnel)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map errors to exit codes (never a traceback for an expected error)."""
    try:
        cli.main(args=argv, prog_name="cra", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except click.Abort:
        err_console.print("[red]aborted[/]")
        return 130
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]: finished work is saved; run the same command again to resume")
        return 130
    except CraError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
