"""``cra train-plan``: which stage to train next, with the evidence, as a stored artifact.

The artifact (``training_plan.schema.json`` in ``appliance/schemas``) ranks the stages by
weakness (``LogAnalysisAPI.rank``): each with its measures and intervals, how it compares
with the other stages, and the largest groups of its failures by error signature with
example run ids. Then, per adapter slot (scope, precision, plan, execute-code,
task-analysis), the SFT and DPO data there is, by source (gold, teacher, self, imported)
and repo, against the minimums of ``[training]``, and what to build: the slots in the
order of their stages' weakness.

It holds no timestamp and no random draw, so the same DB gives the same artifact and the
same content hash; ``training_plans`` stores it once per hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from appliance.atomic import write_atomic
from appliance.config import TrainingConfig
from appliance.db import logs as log_sql
from appliance.db.core import Database
from appliance.db.training import (
    TrainingPlanRow,
    count_imported,
    get_training_plan,
    save_training_plan,
    triple_sources,
)
from appliance.errors import BadInput, NotFound
from appliance.status import AdapterSlot, DataSource, values
from appliance.training.logs import STAGE_SLOT, LogAnalysisAPI
from appliance.training.sources import STAGE_SLOTS, SourceRules

PLAN_VERSION = 1
SCHEMA_NAME = "training_plan.schema.json"
SLOTS = tuple(values(AdapterSlot))
SOURCES = tuple(values(DataSource))


@cache
def plan_schema() -> dict[str, Any]:
    text = resources.files("appliance").joinpath("schemas", SCHEMA_NAME).read_text(encoding="utf-8")
    return json.loads(text)


def check_plan(plan: dict[str, Any], *, path: Path | str | None = None) -> None:
    """``BadInput`` naming the first place where ``plan`` breaks the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(plan_schema())
    error = next(iter(sorted(validator.iter_errors(plan), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise BadInput(f"training plan does not match its schema at {where}: {error.message}", path=path,
                       hint="make a new one with 'cra train-plan'")


def content_hash(plan: dict[str, Any]) -> str:
    text = json.dumps(plan, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class PlanResult:
    row: TrainingPlanRow
    created: bool
    plan: dict[str, Any]

    @property
    def id(self) -> int:
        return self.row.id


def slot_data(db: Database, config: TrainingConfig, repos: tuple[str, ...] | None = None) -> dict[str, Any]:
    """{slot: {sft|dpo: {rows, by_source, by_repo, minimum, enough}}}: the training data there is."""
    rules = SourceRules(config)
    out: dict[str, Any] = {}
    for slot in SLOTS:
        out[slot] = {kind: {"rows": 0, "by_source": dict.fromkeys(SOURCES, 0), "by_repo": {},
                            "minimum": (config.min_sft if kind == "sft" else config.min_dpo)[slot], "enough": False}
                     for kind in ("sft", "dpo")}
    for r in triple_sources(db, repos=repos):
        slot = STAGE_SLOTS.get(r["stage"])
        if slot is None:
            continue
        entry = out[slot][r["kind"]]
        entry["rows"] += r["n"]
        entry["by_source"][rules.classify(r["models"] or "")] += r["n"]
        entry["by_repo"][r["repo"]] = entry["by_repo"].get(r["repo"], 0) + r["n"]
    if repos is None:
        for slot, imports in count_imported(db).items():
            entry = out[slot]["sft"]
            for name, n in imports.items():
                entry["rows"] += n
                entry["by_source"]["imported"] += n
                entry["by_repo"][f"imported:{name}"] = n
    for slot in SLOTS:
        for kind in ("sft", "dpo"):
            entry = out[slot][kind]
            entry["by_repo"] = dict(sorted(entry["by_repo"].items()))
            entry["enough"] = entry["rows"] >= entry["minimum"] if entry["minimum"] else entry["rows"] > 0
    return out


def build_plan(db: Database, config: TrainingConfig, *, since: str | None = None, until: str | None = None,
               repo: str | None = None, domain: str | None = None, model: str | None = None,
               adapter: str | None = None, api: LogAnalysisAPI | None = None,
               failure_groups: int = 5, examples: int = 3) -> dict[str, Any]:
    """The plan artifact (a dict matching the schema) for the runs selected by the arguments."""
    api = api or LogAnalysisAPI(db)
    f = api.slice(repo=repo, domain=domain, since=since, until=until, model=model, adapter=adapter)
    reports = api.stages(f)
    ranking = api.rank(reports)
    groups = api.failure_groups(f, limit=failure_groups * 3, examples=examples)
    stages = []
    for entry in ranking:
        report = reports[entry["stage"]]
        mine = [g.to_dict() for g in groups if g.stage == entry["stage"]][:failure_groups]
        stages.append({**entry, "measures": {k: m.to_dict() for k, m in report.measures.items()},
                       "counts": report.counts, "notes": report.notes, "failures": mine})
    data = slot_data(db, config, f.repos)
    order: list[str] = []
    for entry in ranking:
        if entry["evidence"] == "measured" and entry["slot"] not in order:
            order.append(entry["slot"])
    order += [s for s in SLOTS if s not in order]
    slots = []
    for priority, slot in enumerate(order, start=1):
        kinds = data[slot]
        build = [k for k in ("sft", "dpo") if kinds[k]["rows"] > 0 and (k == "sft" or kinds[k]["minimum"] > 0)]
        weak = [e["stage"] for e in ranking if e["slot"] == slot and e["evidence"] == "measured"]
        if not build:
            reason = "no training data yet" + ("" if slot != "task-analysis" else
                                               ": the pipeline logs no task analyses; import a dataset")
        elif all(kinds[k]["enough"] for k in build):
            reason = "enough data"
        else:
            short = [f"{k} {kinds[k]['rows']}/{kinds[k]['minimum']}" for k in build if not kinds[k]["enough"]]
            reason = "below the minimum: " + ", ".join(short)
        slots.append({"slot": slot, "priority": priority, "stages": weak, "build": build, "reason": reason,
                      "sft": kinds["sft"], "dpo": kinds["dpo"]})
    first, last = log_sql.started_range(db, f)
    plan = {
        "version": PLAN_VERSION,
        "params": {"since": since, "until": until, "repo": repo, "domain": domain, "model": model,
                   "adapter": adapter},
        "evidence": {"runs_started": {"first": first, "last": last}, "calls": api.calls(f),
                     "stage_slots": STAGE_SLOT},
        "ranking": [e["stage"] for e in ranking],
        "stages": stages,
        "slots": slots,
    }
    check_plan(plan)
    return plan


def make_plan(db: Database, config: TrainingConfig, *, out: Path | None = None, **kwargs: Any) -> PlanResult:
    """Build, check, store (once per content hash) and optionally write the plan to ``out``."""
    plan = build_plan(db, config, **kwargs)
    digest = content_hash(plan)
    params = {k: v for k, v in plan["params"].items() if v is not None}
    row, created = save_training_plan(db, digest, params, plan)
    if out is not None:
        write_atomic(out, json.dumps({"id": row.id, "content_hash": digest, **plan}, indent=2, sort_keys=True) + "\n")
    return PlanResult(row, created, plan)


def load_plan(db: Database, ref: str) -> TrainingPlanRow:
    """A plan by id (``12``) or by file (a ``cra train-plan --out`` JSON), checked."""
    if ref.isdigit():
        return get_training_plan(db, int(ref))
    path = Path(ref)
    if not path.is_file():
        raise NotFound(f"no training plan '{ref}' (neither an id nor a file)",
                       hint="give a plan id from 'cra train-plan' or the file it wrote with --out")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"not a JSON training plan: {exc}", path=path) from exc
    if not isinstance(data, dict):
        raise BadInput("not a JSON training plan", path=path)
    plan = {k: v for k, v in data.items() if k not in ("id", "content_hash")}
    check_plan(plan, path=path)
    digest = content_hash(plan)
    if data.get("content_hash") not in (None, digest):
        raise BadInput("the plan's content does not match its content_hash (edited by hand?)", path=path,
                       hint="make a new one with 'cra train-plan'")
    row, _ = save_training_plan(db, digest, {k: v for k, v in plan["params"].items() if v is not None}, plan)
    return row
