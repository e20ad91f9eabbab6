"""Which tasks an evaluation may use, and the refusals that keep it honest.

* **Chronological holdout** (DESIGN.md: "evaluation is chronological only"; seed 004 §5:
  random splits read 57-94% more optimistic): the validated tasks whose commit was
  authored at or after the cutoff. The cutoff is the training data's (the latest cutoff of
  the datasets the compared versions were trained on), or later when asked; an earlier one
  would let training rows sit inside the holdout and is refused.
* **Leakage check**: no training row of those datasets may come from a held-out or frozen
  task, by task (same repo and commit) or by content (the same example as a triple built
  from one of them). One leaking row refuses the evaluation, naming it.
* **Size check**: fewer held-out tasks than ``[evaluation] min_holdout`` is refused, the
  message saying how many the configured effect would need (``stats.needed_holdout``).
* **Frozen regression set** (seed 002): ``frozen_size`` tasks chosen once, from the first
  evaluation's holdout, spread over its time span, and checked on every evaluation after
  it, whatever the cutoff. Training on them is leakage like any other.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.config import EvaluationConfig
from appliance.db import evaluation as sql
from appliance.db.core import Database
from appliance.db.evaluation import Leak, TaskRef
from appliance.errors import HoldoutTooSmall, LeakError
from appliance.evaluation.stats import detectable_effect, needed_holdout


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


@dataclass
class Holdout:
    """The tasks of one evaluation: held out, frozen, and what was checked to allow them."""

    cutoff_ts: int
    tasks: list[TaskRef]
    frozen: list[TaskRef]
    datasets: list[int]
    rows_checked: int = 0
    needed: int = 0  # held-out tasks the configured effect needs
    detectable: float | None = None  # the smallest difference this many tasks detect
    notes: list[str] = field(default_factory=list)

    @property
    def all_tasks(self) -> list[TaskRef]:
        """Held-out and frozen tasks, each once, oldest first: what the sides run on."""
        return sorted({t.key: t for t in (*self.tasks, *self.frozen)}.values())

    def to_dict(self) -> dict[str, Any]:
        return {"cutoff": day(self.cutoff_ts), "cutoff_ts": self.cutoff_ts, "tasks": len(self.tasks),
                "frozen": len(self.frozen), "datasets": self.datasets, "rows_checked": self.rows_checked,
                "needed": self.needed, "detectable": self.detectable, "notes": self.notes}


def choose_cutoff(db: Database, datasets: Sequence[int], requested_ts: int | None) -> int:
    """The holdout's start: the latest training cutoff of ``datasets``, or ``requested_ts``
    when it is not earlier (``LeakError``: an earlier one would hold out training data)."""
    cutoffs = sql.dataset_cutoffs(db, datasets)
    latest = max(cutoffs.values(), default=None)
    if requested_ts is None:
        if latest is None:
            raise LeakError("nothing says where the holdout starts: no side was trained on a recorded dataset",
                            hint="give --cutoff DATE (tasks authored from that day on are held out)")
        return latest
    if latest is not None and requested_ts < latest:
        which = max(cutoffs, key=lambda k: cutoffs[k])
        raise LeakError(f"--cutoff {day(requested_ts)} is before dataset {which}'s cutoff {day(latest)}: "
                        "the holdout would include commits its adapter was trained on",
                        hint=f"use --cutoff {day(latest)} or later")
    return requested_ts


def check_leakage(db: Database, datasets: Sequence[int], tasks: Sequence[TaskRef]) -> int:
    """Rows checked; ``LeakError`` naming the first leaking rows when any training row of
    ``datasets`` touches ``tasks``."""
    checked, found = sql.leaks(db, datasets, tasks)
    if found:
        raise LeakError(
            f"{_describe(found)}: the evaluation would test on what was trained on",
            hint="train on a dataset cut before the holdout (cra curate-data --cutoff), or evaluate later tasks "
                 "(--cutoff)")
    return checked


def _describe(found: Sequence[Leak]) -> str:
    first = found[0]
    task = f"{first.task_repo}@{first.task_sha[:10]}"
    row = f"training row {first.split}:{first.row_no} of dataset {first.dataset_id}"
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    if first.why == "task":
        return f"{row} is from held-out task {task}{more}"
    origin = f"{first.repo}@{(first.sha or '')[:10]}" if first.repo else "an imported row"
    return f"{row} ({origin}) has the content of a triple of held-out task {task}{more}"


def check_size(n: int, config: EvaluationConfig) -> tuple[int, float | None]:
    """(tasks the configured effect needs, the effect ``n`` tasks detect); ``HoldoutTooSmall``
    when ``n`` is under ``min_holdout``."""
    needed = needed_holdout(config.effect, sd=config.planning_sd, level=config.level, power=config.power)
    detectable = detectable_effect(n, sd=config.planning_sd, level=config.level, power=config.power)
    if n < config.min_holdout:
        raise HoldoutTooSmall(
            f"the holdout has {n} task{'s' if n != 1 else ''}, fewer than [evaluation] min_holdout = "
            f"{config.min_holdout}; detecting a difference of {config.effect:g} at {config.power:.0%} power "
            f"would need about {needed}",
            hint="validate more commits after the cutoff (cra harness validate), choose an earlier --cutoff "
                 "(then train before it), or lower min_holdout in cra.toml knowing the result is less sure")
    return needed, detectable


def choose_frozen(db: Database, holdout: Sequence[TaskRef], config: EvaluationConfig) -> tuple[list[TaskRef], bool]:
    """(the frozen regression set, whether it is newly chosen and still to be stored).

    An existing set is kept (its tasks that are no longer valid leave it); a new one takes
    ``frozen_size`` tasks of ``holdout`` spread over its time span: the holdout cut into that
    many consecutive groups, one task drawn from each with the configured seed.
    """
    existing = sql.frozen_tasks(db)
    if existing:
        return sql.tasks_by_key(db, existing), False
    size = min(config.frozen_size, len(holdout))
    if size == 0:
        return [], False
    ordered = sorted(holdout)
    rng = random.Random(config.seed)
    picked = []
    for i in range(size):
        group = ordered[i * len(ordered) // size:(i + 1) * len(ordered) // size]
        picked.append(rng.choice(group))
    return picked, True


def select_holdout(db: Database, config: EvaluationConfig, *, datasets: Sequence[int],
                   cutoff_ts: int | None = None, repos: Sequence[str] | None = None) -> tuple[Holdout, bool]:
    """The checked holdout of an evaluation, and whether its frozen set is new (store it with
    ``appliance.db.evaluation.set_frozen`` once the evaluation has an id).

    Order of the refusals: a cutoff before the training data's (``LeakError``), too few
    tasks (``HoldoutTooSmall``), a training row from a held-out or frozen task (``LeakError``).
    """
    cutoff = choose_cutoff(db, datasets, cutoff_ts)
    tasks = sql.valid_tasks(db, since_ts=cutoff, repos=repos)
    needed, detectable = check_size(len(tasks), config)
    frozen, new = choose_frozen(db, tasks, config)
    out = Holdout(cutoff, tasks, frozen, list(datasets), needed=needed, detectable=detectable)
    out.rows_checked = check_leakage(db, datasets, out.all_tasks)
    if len(tasks) < needed:
        out.notes.append(f"{len(tasks)} held-out tasks detect differences of about {detectable:.2f} or more; "
                         f"{config.effect:g} would need {needed}")
    return out, new
