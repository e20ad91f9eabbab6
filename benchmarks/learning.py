"""Does a scope adapter learn anything? Base model against adapter on later commits, with an interval.

On a chronological split of one packaged repo (the shipped inkwell sample by default): the
latest ``--share`` of its validated tasks are held out; a scope adapter is trained on the
earlier commits' gold scope triples (``cra train-plan`` -> ``cra curate-data`` cut at the
split -> ``cra train``) for the small local model ``cra demo`` builds; then ``cra eval``'s
stage probes ask base and adapter the same scope question about every held-out commit,
with the same seeds, and score recall@k against the files the commit changed. Printed:
both recalls, the paired difference with its bootstrap 95% interval, and what training
cost (rows, steps, wall time, tokens per second). The named baseline is the base model,
measured in the same run. Honest whatever it shows: a difference whose interval holds 0 is
reported as such.

    python benchmarks/learning.py                     # the inkwell sample (its wheels from PyPI once)
    python benchmarks/learning.py --wheels DIR        # the sample, offline from a wheel folder
    python benchmarks/learning.py --home H --repo NAME   # a repo package already validated in H
    python benchmarks/learning.py --epochs 20 --share 0.3 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.config import Home, Settings, load_settings
from appliance.db.core import Database

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "corpus" / "samples" / "inkwell.bundle"


def sample_home(work: Path, wheels: Path | None) -> tuple[Home, str]:
    """A home with the inkwell sample added the product's way and validated."""
    from appliance.packaging.corpus import add_repo
    from harness.validation import validate_repo

    home = Home(work / "home")
    home.root.mkdir(parents=True)
    settings = Settings()
    if wheels is not None:
        settings.packaging.find_links = [str(wheels.resolve())]
        settings.packaging.no_index = True
    with Database(home.db_path) as db:
        add_repo(home, db, settings, str(SAMPLE), name="inkwell")
        validate_repo(home, db, "inkwell", workers=2)
    return home, "inkwell"


def split_ts(db: Database, repo: str, share: float) -> int:
    from appliance.db.evaluation import valid_tasks

    tasks = valid_tasks(db, repos=[repo])
    if len(tasks) < 4:
        raise SystemExit(f"{repo} has {len(tasks)} validated tasks: too few to split")
    return tasks[min(len(tasks) - 1, max(1, round(len(tasks) * (1 - share))))].author_ts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="CRA_HOME holding a validated repo package")
    parser.add_argument("--repo", help="the repo package's name (with --home)")
    parser.add_argument("--wheels", type=Path, help="the sample's wheels, to package it offline")
    parser.add_argument("--llama-cpp", type=Path, help="llama.cpp's converters (default: as cra demo finds them)")
    parser.add_argument("--share", type=float, default=0.35, help="latest share of tasks held out (default 0.35)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the demo recipe's)")
    parser.add_argument("--k", type=int, default=3, help="k of scope recall@k (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if bool(args.home) != bool(args.repo):
        parser.error("--home and --repo go together")

    from appliance.demo import find_converter, setup_model
    from appliance.evaluation import evaluate
    from appliance.evaluation.sides import Side, side_adapter
    from appliance.llm import LLMClient
    from harness.triples import build_gold

    started = time.monotonic()
    from appliance.training.curate import curate_from_plan
    from appliance.training.plan import make_plan
    from appliance.training.trainer import train

    work = Path(tempfile.mkdtemp(prefix="cra-bench-learning-"))
    home, repo = (Home(args.home.resolve()), args.repo) if args.home else sample_home(work, args.wheels)
    prepared = time.monotonic() - started
    setup_model(home, find_converter(args.llama_cpp))
    if args.epochs:
        recipe = home.adapters / "scope.toml"
        text = recipe.read_text()
        recipe.write_text("\n".join(f"epochs = {args.epochs}" if line.startswith("epochs =") else line
                                    for line in text.splitlines()) + "\n")
    settings = load_settings(home)
    settings.evaluation.end_to_end = False  # the scope stage alone: the pipeline calls no scope stage
    settings.evaluation.min_holdout = 1  # report whatever the split gives, with its interval
    settings.evaluation.frozen_size = 0
    settings.evaluation.scope_k = args.k
    with Database(home.db_path) as db:
        build_gold(db, home, repo)
        cutoff = split_ts(db, repo, args.share)
        plan = make_plan(db, settings.training, repo=repo)
        [dataset] = [r.dataset for r in curate_from_plan(db, home, settings.training, str(plan.id), slot="scope",
                                                         cutoff_ts=cutoff) if r.dataset.kind == "sft"]
        t0 = time.monotonic()
        trained = train(home, db, "scope", dataset.id, settings=settings)
        train_wall = time.monotonic() - t0
        client = LLMClient.from_config(settings.llm, log=db)
        candidate = Side("adapter", (side_adapter(home, trained.version),))
        outcome = evaluate.run(home, db, settings, evaluate.Request("scope", candidate, Side("base"),
                                                                    cutoff_ts=cutoff), client=client)
        diff = outcome.evaluation.summary["metrics"]["scope_recall"]["holdout"]
    fit = trained.outcome
    figures = {
        "repo": repo, "split": datetime.fromtimestamp(cutoff, UTC).date().isoformat(),
        "held_out_tasks": diff["n"] if diff else 0, "train_rows": dataset.rows_train, "valid_rows": dataset.rows_valid,
        "k": args.k,
        "baseline": "the base model (the demo recipe), same tasks, same seeds",
        "base_recall": diff and round(diff["baseline"], 4), "adapter_recall": diff and round(diff["candidate"], 4),
        "difference": diff and round(diff["diff"], 4), "interval_95": diff and [round(diff["low"], 4), round(diff["high"], 4)],
        "p_better": diff and round(diff["better"], 4),
        "ratio": round(diff["candidate"] / diff["baseline"], 3) if diff and diff["baseline"] else None,
        "training": {"steps": fit.steps, "train_s": round(fit.train_s, 2), "wall_s": round(train_wall, 2),
                     "tokens": fit.tokens, "tokens_per_s": fit.tokens_per_s and round(fit.tokens_per_s, 1),
                     "final_loss": fit.train_loss and round(fit.train_loss, 4), "backend": fit.backend,
                     "device": fit.device},
        "evaluation": outcome.evaluation.id, "report": str(outcome.report / "report.html"),
        "setup_s": round(prepared, 1), "total_s": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    if not diff:
        print(f"{repo}: no held-out task could be measured on both sides")
        return
    sure = "excludes 0" if diff["low"] > 0 or diff["high"] < 0 else "includes 0: no sure difference"
    print(f"{repo}, split at {figures['split']}: trained on {dataset.rows_train} scope rows of the earlier commits, "
          f"evaluated on {diff['n']} later ones")
    print(f"  scope recall@{args.k}: base {diff['baseline']:.3f}, adapter {diff['candidate']:.3f}, "
          f"difference {diff['diff']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}] (95% paired bootstrap, {sure}); "
          f"P(better) {diff['better']:.2f}; ratio adapter/base "
          f"{figures['ratio'] if figures['ratio'] is not None else 'n/a (base 0)'}")
    t = figures["training"]
    print(f"  training cost: {t['steps']} steps, {t['train_s']} s in the trainer ({t['wall_s']} s with loading and "
          f"the GGUF copy), {t['tokens']} tokens, {t['tokens_per_s']} tokens/s on {t['device']} ({t['backend']})")
    print(f"  report: {figures['report']}")


if __name__ == "__main__":
    main()
