"""``LogAnalysisAPI``: the raw DB read as evidence of which pipeline stage is weak.

Seed 004 §3 Stream C: the Phase 4 counterpart of the knowledge base, over the logs instead
of the code. One object, one DB; every query cross-references runs, LLM calls,
retrievals, plans and attempts by run and task, and can be sliced by repo, domain (from
``corpus/catalog.toml``), time window (when the run started), model and adapter version.
Per stage it gives the measures a reader of the spec expects, each a ``Measure`` with its
sample size and a 95% interval (Wilson for rates, bootstrap for means):

========== ================================================================================
scope      recall and precision of the retrieved files against the commit's changed
           source files (first retrieval per task)
precision  recall of the retrieved symbols against the commit's changed symbols
plan       alignment of the model's plans (score and its parts), bad-output rate
execute    apply-error rate, share of answers whose pollution was stripped
validate   resolved rate, repair success, steps to green, repeat-error rate (the same
           error signature again right after a repair), infrastructure failures apart
========== ================================================================================

Each stage also has one ``quality`` figure in [0, 1], higher better (file recall, symbol
recall, alignment, 1 - apply-error rate, resolved rate), which ``rank`` orders stages by.
SQL lives in ``appliance.db.logs``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from appliance.db import logs as sql
from appliance.db.core import Database
from appliance.db.logs import RunFilter
from appliance.errors import BadInput
from appliance.status import AdapterSlot
from appliance.training.signatures import signature
from appliance.training.stats import Measure, mean, rate

STAGES = ("scope", "precision", "plan", "execute", "validate")
STAGE_SLOT = {"scope": AdapterSlot.SCOPE.value, "precision": AdapterSlot.PRECISION.value,
              "plan": AdapterSlot.PLAN.value, "execute": AdapterSlot.EXECUTE_CODE.value,
              "validate": AdapterSlot.EXECUTE_CODE.value}
DIMENSIONS = ("repo", "domain", "model", "adapter")
UNCATALOGUED = "(not in the catalog)"


@dataclass
class StageReport:
    """What the logs say of one stage: its measures, the one ``quality`` ranks by, and notes."""

    stage: str
    slot: str
    quality: Measure  # higher is better, in [0, 1]
    measures: dict[str, Measure] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "slot": self.slot, "quality": self.quality.to_dict(),
                "measures": {k: m.to_dict() for k, m in self.measures.items()}, "counts": self.counts,
                "notes": self.notes}


@dataclass
class FailureGroup:
    """Failed attempts sharing an error signature, with the runs that show it."""

    signature: str
    stage: str
    attempts: int
    runs: int
    example_runs: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "stage": self.stage, "attempts": self.attempts, "runs": self.runs,
                "example_runs": self.example_runs}


def _domains_from_catalog() -> dict[str, str]:
    from appliance.packaging.catalog import load_catalog

    try:
        return {e.name: e.categories[0] for e in load_catalog()}
    except BadInput:
        return {}


class LogAnalysisAPI:
    """Queries over the raw DB's logs. ``domains`` maps repo names to domains; by default
    each catalog entry's first category (``corpus/catalog.toml``: 'fail-fast', 'lora', ...),
    a repo outside the catalog being a domain of its own."""

    def __init__(self, db: Database, *, domains: dict[str, str] | None = None):
        self.db = db
        self._domains = domains

    # ------------------------------------------------------------------ slicing

    @property
    def domains(self) -> dict[str, str]:
        if self._domains is None:
            self._domains = _domains_from_catalog()
        return self._domains

    def domain_of(self, repo: str) -> str:
        """A repo's domain: its catalog category, or the repo itself when it is not catalogued."""
        return self.domains.get(repo, repo)

    def slice(self, *, repo: str | None = None, domain: str | None = None, since: str | None = None,
              until: str | None = None, model: str | None = None, adapter: str | None = None) -> RunFilter:
        """A ``RunFilter`` from the user's terms: a repo or a domain (never both), a time
        window, a model, an adapter ('' for the base model)."""
        if repo and domain:
            raise BadInput("give a repo or a domain, not both")
        repos: tuple[str, ...] | None = None
        if repo:
            repos = (repo,)
        elif domain:
            known = sorted({self.domain_of(r) for r in sql.distinct_values(self.db, "repo", RunFilter())})
            repos = tuple(r for r in sql.distinct_values(self.db, "repo", RunFilter()) if self.domain_of(r) == domain)
            if not repos:
                raise BadInput(f"no runs of domain '{domain}'", hint=f"domains with runs: {', '.join(known) or 'none'}")
        return RunFilter(repos=repos, since=since, until=until, model=model, adapter=adapter)

    def values(self, dimension: str, f: RunFilter | None = None) -> list[str]:
        """The values a dimension takes among the filtered runs (for ``breakdown``)."""
        f = f or RunFilter()
        if dimension == "domain":
            return sorted({self.domain_of(r) for r in sql.distinct_values(self.db, "repo", f)})
        if dimension not in DIMENSIONS:
            raise BadInput(f"unknown dimension '{dimension}'", hint=f"use one of {', '.join(DIMENSIONS)}")
        return [str(v) for v in sql.distinct_values(self.db, dimension, f)]

    def _narrow(self, f: RunFilter, dimension: str, value: str) -> RunFilter:
        if dimension == "repo":
            return replace(f, repos=(value,) if f.repos is None or value in f.repos else ())
        if dimension == "domain":
            repos = [r for r in sql.distinct_values(self.db, "repo", f) if self.domain_of(r) == value]
            return replace(f, repos=tuple(repos))
        return replace(f, **{dimension: value})

    # ------------------------------------------------------------------ stages

    def scope(self, f: RunFilter | None = None) -> StageReport:
        """File recall and precision of the first retrieval of each task."""
        recall, precision = [], []
        for row in sql.retrievals(self.db, f or RunFilter(), part="files"):
            gold = _source_files(row["gold_files"])
            if not gold:
                continue  # a commit that changed no source file has nothing to find
            got = [x["path"] for x in json.loads(row["got"])]
            hits = len(gold.intersection(got))
            recall.append(hits / len(gold))
            precision.append(hits / len(got) if got else 0.0)
        m = {"file_recall": mean("file_recall", recall), "file_precision": mean("file_precision", precision)}
        return StageReport("scope", STAGE_SLOT["scope"], _as_quality(m["file_recall"]), m, {"tasks": len(recall)})

    def precision(self, f: RunFilter | None = None) -> StageReport:
        """Recall of the retrieved symbols against the symbols the commit changed."""
        recall = []
        for row in sql.retrievals(self.db, f or RunFilter(), part="symbols"):
            source = _source_files(row["gold_files"])
            gold = {(p, s) for p, names in json.loads(row["gold_symbols"]).items() if p in source for s in names}
            if gold:
                got = {(x["path"], x.get("symbol", "")) for x in json.loads(row["got"])}
                recall.append(len(gold & got) / len(gold))
        m = {"symbol_recall": mean("symbol_recall", recall)}
        return StageReport("precision", STAGE_SLOT["precision"], _as_quality(m["symbol_recall"]), m,
                           {"tasks": len(recall)})

    def plan(self, f: RunFilter | None = None) -> StageReport:
        """The model's plans: alignment score and its parts, and the bad-output rate."""
        f = f or RunFilter()
        rows = sql.plan_scores(self.db, f, planner="model")
        m = {f"alignment.{part}" if part != "score" else "alignment": mean(
            part, [r[part] for r in rows if r[part] is not None]) for part in sql.PLAN_PARTS}
        counts = sql.attempt_counts(self.db, f)
        m["bad_output_rate"] = rate("bad_output_rate", counts["bad_plan"], counts["attempts"])
        baseline = [r["score"] for r in sql.plan_scores(self.db, f, planner="retrieval")]
        m["retrieval_planner_alignment"] = mean("retrieval_planner_alignment", baseline)
        report = StageReport("plan", STAGE_SLOT["plan"], _as_quality(m["alignment"]), m,
                             {"plans": len(rows), "attempts": counts["attempts"]})
        if not rows:
            report.notes.append("no scored model plan: run 'cra harness run' with a model")
        return report

    def execute(self, f: RunFilter | None = None) -> StageReport:
        """Apply-error rate of the edits and the share of answers with pollution stripped."""
        f = f or RunFilter()
        counts = sql.attempt_counts(self.db, f)
        polluted = sql.pollution_counts(self.db, f)
        m = {"apply_error_rate": rate("apply_error_rate", counts["apply_error"], counts["executed"]),
             "no_edits_rate": rate("no_edits_rate", counts["no_edits"], counts["executed"]),
             "pollution_stripped_share": rate("pollution_stripped_share", polluted["stripped"], polluted["answers"])}
        quality = _inverse(m["apply_error_rate"], "apply_success")
        return StageReport("execute", STAGE_SLOT["execute"], quality, m,
                           {"executed": counts["executed"], "answers": polluted["answers"]})

    def validate(self, f: RunFilter | None = None) -> StageReport:
        """Resolved rate, repair success, steps to green and repeat errors of the model runs;
        ``infra_error`` and harness ``error`` runs are counted apart, never as failures."""
        f = f or RunFilter()
        outcomes = sql.run_outcomes(self.db, f)
        by_status = Counter(r["status"] for r in outcomes)
        done = [r for r in outcomes if r["status"] in sql.MODEL_DONE]
        resolved = [r for r in done if r["status"] == "resolved"]
        repaired = [r for r in done if r["attempts"] >= 2]
        m = {"resolved_rate": rate("resolved_rate", len(resolved), len(done)),
             "repair_success": rate("repair_success",
                                    sum(1 for r in repaired if r["status"] == "resolved"), len(repaired)),
             "steps_to_green": mean("steps_to_green", [r["steps_to_green"] or r["attempts"] for r in resolved])}
        repeats, pairs = self._repeats(f)
        m["repeat_error_rate"] = rate("repeat_error_rate", repeats, pairs)
        counts = {"runs": len(done), "infra_error": by_status.get("infra_error", 0),
                  "harness_error": by_status.get("error", 0), "running": by_status.get("running", 0)}
        report = StageReport("validate", STAGE_SLOT["validate"], _as_quality(m["resolved_rate"]), m, counts)
        if counts["infra_error"] or counts["harness_error"]:
            report.notes.append(f"{counts['infra_error']} infra_error and {counts['harness_error']} harness error "
                                "runs left out of every rate (not the model's failures)")
        return report

    def _repeats(self, f: RunFilter) -> tuple[int, int]:
        """(repeats, repair pairs): attempt n failed and attempt n+1 failed the same way."""
        previous: tuple[int, int, str | None] | None = None
        repeats = pairs = 0
        for row in sql.attempts(self.db, f, repaired_only=True):
            sig = None if row["resolved"] else _signature(row)
            if previous is not None and previous[0] == row["run_id"] and previous[1] + 1 == row["attempt"] \
                    and previous[2] is not None:
                pairs += 1
                repeats += sig == previous[2]
            previous = (row["run_id"], row["attempt"], sig)
        return repeats, pairs

    def stages(self, f: RunFilter | None = None) -> dict[str, StageReport]:
        """Every stage's report, in pipeline order."""
        f = f or RunFilter()
        return {"scope": self.scope(f), "precision": self.precision(f), "plan": self.plan(f),
                "execute": self.execute(f), "validate": self.validate(f)}

    def rank(self, reports: dict[str, StageReport]) -> list[dict[str, Any]]:
        """Stages from weakest to strongest by ``quality``, with how each compares to the rest.

        A stage is *clearly weaker* than another when its interval lies wholly below the
        other's. Stages with no evidence come last, in pipeline order.
        """
        known = sorted((r for r in reports.values() if r.quality.n > 0),
                       key=lambda r: (r.quality.value, r.quality.hi, STAGES.index(r.stage)))
        unknown = [r for r in reports.values() if r.quality.n == 0]
        out = []
        for i, r in enumerate(known + unknown):
            q = r.quality
            others = [o for o in known if o.stage != r.stage]
            entry: dict[str, Any] = {"rank": i + 1, "stage": r.stage, "slot": r.slot, "quality": q.to_dict()}
            if q.n == 0:
                entry["evidence"] = "none"
                entry["weaker_than"], entry["stronger_than"], entry["gap_to_others"] = [], [], None
            else:
                entry["evidence"] = "measured"
                entry["weaker_than"] = [o.stage for o in others if q.hi is not None and o.quality.lo is not None
                                        and q.hi < o.quality.lo]
                entry["stronger_than"] = [o.stage for o in others if q.lo is not None and o.quality.hi is not None
                                          and q.lo > o.quality.hi]
                rest = [o.quality.value for o in others if o.quality.value is not None]
                entry["gap_to_others"] = round(q.value - sum(rest) / len(rest), 4) if rest and q.value is not None \
                    else None
            out.append(entry)
        return out

    # ------------------------------------------------------------------ failures

    def failure_groups(self, f: RunFilter | None = None, *, limit: int = 5,
                       examples: int = 3) -> list[FailureGroup]:
        """The largest groups of failed attempts by error signature, each with example runs
        (the lowest run ids, so the answer is the same for the same DB)."""
        groups: dict[str, list[int]] = defaultdict(list)
        stages: dict[str, str] = {}
        for row in sql.attempts(self.db, f or RunFilter(), failed_only=True):
            sig = _signature(row)
            groups[sig].append(row["run_id"])
            stages.setdefault(sig, _stage_of(sig))
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
        return [FailureGroup(sig, stages[sig], len(runs), len(set(runs)), sorted(set(runs))[:examples])
                for sig, runs in ordered]

    def calls(self, f: RunFilter | None = None) -> dict[str, dict[str, int]]:
        """LLM call tries by stage and status ({stage: {status: tries}})."""
        out: dict[str, dict[str, int]] = {}
        for r in sql.call_counts(self.db, f or RunFilter()):
            out.setdefault(r["stage"], {})[r["status"]] = r["n"]
        return out

    # ------------------------------------------------------------------ breakdowns

    def breakdown(self, dimension: str, f: RunFilter | None = None,
                  stages: Iterable[str] = STAGES) -> dict[str, dict[str, StageReport]]:
        """{value: {stage: report}} for each value of ``dimension`` among the filtered runs."""
        f = f or RunFilter()
        wanted = list(stages)
        for s in wanted:
            if s not in STAGES:
                raise BadInput(f"unknown stage '{s}'", hint=f"use one of {', '.join(STAGES)}")
        out: dict[str, dict[str, StageReport]] = {}
        for value in self.values(dimension, f):
            narrowed = self._narrow(f, dimension, value)
            out[value] = {s: getattr(self, s)(narrowed) for s in wanted}
        return out


def _source_files(files_json: str) -> set[str]:
    return {c["path"] for c in json.loads(files_json) if c.get("kind") == "source"}


def _signature(row: Any) -> str:
    return _sign(row["validation"], row["apply_status"], row["apply_error"], row["test_output"])


@lru_cache(maxsize=1 << 16)  # failures repeat: the same inputs are signed once
def _sign(validation: str, apply_status: str, apply_error: str | None, test_output: str) -> str:
    return signature(json.loads(validation or "{}"), {"apply_status": apply_status, "apply_error": apply_error,
                                                      "test_output": test_output})


def _stage_of(sig: str) -> str:
    head = sig.split(":", 1)[0]
    if head.startswith(("bad_output[plan]", "llm_error[plan]")):
        return "plan"
    if head.startswith(("apply_error", "bad_output", "llm_error")):
        return "execute"
    return "validate"


def _as_quality(m: Measure) -> Measure:
    return replace(m, name=f"quality:{m.name}")


def _inverse(m: Measure, name: str) -> Measure:
    if m.value is None:
        return replace(m, name=f"quality:{name}", kind="rate")
    assert m.lo is not None and m.hi is not None
    return Measure(f"quality:{name}", "rate", 1 - m.value, m.n, 1 - m.hi, 1 - m.lo,
                   None if m.count is None else m.n - m.count)
