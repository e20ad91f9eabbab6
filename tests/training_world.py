"""Raw databases for the training tests, written through cra's own DB functions.

``World`` registers repos and commits, and records runs the way the pipeline records them:
``start_run``, ``log_retrieval``, ``save_plan`` + ``set_plan_score``, ``log_call`` for each
LLM request, ``save_attempt``, ``finish_run``. Tests describe each run by its attempts'
outcomes, so what a measure must come to is known by construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.runs import (
    AttemptRecord,
    CallRecord,
    RunKey,
    finish_run,
    log_call,
    log_retrieval,
    save_attempt,
    start_run,
)
from appliance.db.triples import TripleRecord, save_plan, save_triples, set_plan_score
from appliance.records import CommitRecord, FileChange, RepoRecord

BASE_TS = 1_600_000_000  # 2020-09-13
DAY = 86_400
PLAN = {"kind": "step", "source": "model",
        "steps": [{"id": 1, "file": "src/m.py", "symbols": ["f"], "action": "modify", "description": "x",
                   "depends_on": []}]}


def score_detail(score: float) -> dict[str, Any]:
    part = {"precision": score, "recall": score, "f1": score}
    return {"score": score, "files": part, "symbols": part, "order": score}


@dataclass
class World:
    db: Database
    repos: dict[str, list[str]] = field(default_factory=dict)  # repo -> commit shas
    samples: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def repo(self, name: str, commits: int, *, start_ts: int = BASE_TS) -> list[str]:
        """A repo whose commit i changes ``src/m{i}.py`` (function ``f{i}``) and a test file."""
        shas = [f"{name[:4]}{i:036x}".ljust(40, "0")[:40] for i in range(commits)]
        records = [
            CommitRecord(sha=sha, parent=None, author_date="", author_ts=start_ts + i * DAY, title=f"Change {i}",
                         message=f"Change {i}\n",
                         files=[FileChange(f"src/m{i}.py", 2, 1, "source"), FileChange("tests/test_m.py", 3, 0, "test")],
                         symbols={f"src/m{i}.py": [f"f{i}"], "tests/test_m.py": ["test_m"]})
            for i, sha in enumerate(shas)
        ]
        register_repo(self.db, RepoRecord(name, f"/src/{name}", shas[-1] if shas else "0" * 40, "main", "3.11",
                                          "python -m pytest"), [], records)
        self.repos[name] = shas
        return shas

    def run(self, repo: str, i: int, *, model: str = "coder-3b", adapter: str = "", status: str = "failed",
            attempts: list[dict[str, Any]] | None = None, found: bool = True, symbol: bool = True,
            plan_score: float | None = 0.9, started: str | None = None, provider: str = "scripted") -> int:
        """One run on commit ``i`` of ``repo``. ``attempts``: per attempt, keys ``apply_status``
        (default applied), ``kind`` (validation kind), ``resolved``, ``edits``, ``answer`` (the
        raw execute answer), ``error``, ``stage``, ``test_output``, ``failing`` (a test id)."""
        sha = self.repos[repo][i]
        key = (repo, sha, model)
        sample = self.samples.get(key, 0)
        self.samples[key] = sample + 1
        run = start_run(self.db, RunKey(repo=repo, sha=sha, provider=provider, model=model, adapter=adapter,
                                        temperature=0.2, sample=sample))
        if started:
            with self.db.write() as c:
                c.execute("UPDATE runs SET started_at = ? WHERE id = ?", (started, run.id))
        files = [{"path": f"src/m{i}.py" if found else "src/other.py", "score": 2.0}, {"path": "src/x.py", "score": 1.0}]
        symbols = [{"path": f"src/m{i}.py", "symbol": f"f{i}" if symbol else "g", "score": 1.0, "kind": "function"}]
        log_retrieval(self.db, run.id, attempt=1, query="q", files=files, symbols=symbols, seconds=0.01)
        attempts = attempts or []
        for n, spec in enumerate(attempts, start=1):
            plan_id = None
            stage = spec.get("stage", "execute")
            plan_ok = not (spec.get("kind") == "bad_output" and stage == "plan")
            log_call(self.db, CallRecord(stage="plan", provider=provider, model=model, messages=[{"role": "user",
                     "content": f"plan {i}"}], temperature=0.2, status="ok", latency_s=0.1, run_id=run.id,
                     repo_id=run.repo_id, sha=sha, attempt=n, responses=["{}"]))
            if plan_ok:
                plan_id = save_plan(self.db, repo, sha, PLAN | {"steps": [PLAN["steps"][0] | {"description": f"a{n}"}]},
                                    run_id=run.id, attempt=n)
                if plan_score is not None:
                    set_plan_score(self.db, plan_id, score_detail(plan_score))
                edits = spec.get("edits", "src/m.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n")
                log_call(self.db, CallRecord(stage="execute", provider=provider, model=model,
                         messages=[{"role": "user", "content": f"execute {i}"}], temperature=0.2, status="ok",
                         latency_s=0.1, run_id=run.id, repo_id=run.repo_id, sha=sha, attempt=n,
                         responses=[spec.get("answer", edits)]))
            else:
                edits = ""
            validation: dict[str, Any] = {"kind": spec.get("kind", "resolved" if spec.get("resolved") else "tests_failed")}
            if spec.get("kind") == "bad_output":
                validation |= {"stage": stage, "error": spec.get("error", "not JSON")}
            if spec.get("failing"):
                validation["fail_to_pass"] = {spec["failing"]: "failed"}
            apply_status = spec.get("apply_status", "applied" if plan_ok else "not_run")
            save_attempt(self.db, AttemptRecord(
                run_id=run.id, attempt=n, apply_status=apply_status, edits=edits if apply_status != "no_edits" else "",
                plan_id=plan_id, apply_error=spec.get("apply_error"), validation=validation,
                test_output=spec.get("test_output", ""), resolved=bool(spec.get("resolved"))))
        resolved_at = next((n for n, s in enumerate(attempts, start=1) if s.get("resolved")), None)
        finish_run(self.db, run.id, status=status, attempts=len(attempts), steps_to_green=resolved_at,
                   failure_kind=None if status == "resolved" else "tests_failed")
        return run.id

    def triples(self, repo: str, rows: list[dict[str, Any]]) -> int:
        """Store triples of ``repo``: each row gives ``i`` (the commit), ``stage``, ``kind`` and text."""
        out = []
        for r in rows:
            sha = self.repos[repo][r["i"]]
            prompt = [{"role": "user", "content": r["prompt"]}]
            kw: dict[str, Any] = {}
            if r.get("kind", "sft") == "sft":
                kw["completion"] = [{"role": "assistant", "content": r["answer"]}]
            else:
                kw["chosen"] = [{"role": "assistant", "content": r["chosen"]}]
                kw["rejected"] = [{"role": "assistant", "content": r["rejected"]}]
            out.append(TripleRecord(kind=r.get("kind", "sft"), stage=r.get("stage", "execute"), repo=repo, sha=sha,
                                    author_ts=r.get("ts", BASE_TS + r["i"] * DAY), prompt=prompt,
                                    origin=r.get("origin", "gold"), source_runs=r.get("runs", []),
                                    meta=r.get("meta", {}), **kw))
        return save_triples(self.db, out)


def write_catalog(home_root: Path, domains: dict[str, str]) -> Path:
    """A ``corpus/catalog.toml`` in CRA_HOME placing each repo in a category (its domain)."""
    lines = ["format_version = 1", ""]
    for name, category in domains.items():
        lines += ["[[repo]]", f'name = "{name}"', f'url = "https://github.com/example/{name}"',
                  f'domain = "{name} things"', 'roles = ["P"]', 'tier = "full"', f'categories = ["{category}"]', ""]
    path = home_root / "corpus" / "catalog.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
