"""Every status and kind cra stores, as ``StrEnum``s: one list each, used by the records'
checks, the CLI's ``click.Choice``s and the migrations' CHECK clauses.

A member compares equal to its string (``TaskStatus.VALID == "valid"``), so rows read back
from SQLite need no conversion. The declaration order is the order listings report them in.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """What gold-patch validation made of one kept commit (``tasks.status``)."""

    VALID = "valid"
    NO_FAIL_TO_PASS = "no_fail_to_pass"
    FLAKY = "flaky"
    TIMEOUT = "timeout"
    PATCH_ERROR = "patch_error"
    ENV_ERROR = "env_error"
    # The streamed per-test outcomes, the JUnit file, the exit status and the closing counts
    # disagree: never valid, never trained on (issue 9).
    GRADING_CONFLICT = "grading_conflict"


class RunStatus(StrEnum):
    """How one agent run ended (``runs.status``)."""

    RUNNING = "running"
    RESOLVED = "resolved"
    FAILED = "failed"
    PLANNED = "planned"
    ERROR = "error"
    # The model server, the network to it or the environment failed, not the model: never
    # counted in a resolved rate, never a rejected DPO answer, retried by the next run.
    INFRA_ERROR = "infra_error"


FINISHED_RUN_STATUSES = frozenset({RunStatus.RESOLVED, RunStatus.FAILED, RunStatus.PLANNED})
"""Run statuses a rerun skips: ``error`` and ``infra_error`` runs are tried again."""


class CallStatus(StrEnum):
    """How one LLM request try ended (``llm_calls.status``)."""

    OK = "ok"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    CONNECTION_ERROR = "connection_error"
    BAD_REQUEST = "bad_request"
    BAD_OUTPUT = "bad_output"
    ERROR = "error"


class ApplyStatus(StrEnum):
    """What became of one attempt's edits (``attempts.apply_status``)."""

    APPLIED = "applied"
    APPLY_ERROR = "apply_error"
    NO_EDITS = "no_edits"
    NOT_RUN = "not_run"
    # The edits touch the oracle (the task's tests, conftest.py, test configuration,
    # interpreter start-up files, plugin registration): refused, never applied (issue 9).
    ORACLE_TAMPER = "oracle_tamper"


class LeaseKind(StrEnum):
    """What a work lease claims (``leases.kind``): one unit of a command several processes share."""

    VALIDATE = "validate"  # one kept commit of ``cra harness validate``
    RUN = "run"            # one run key of ``cra harness run`` (a task at a temperature and sample)


class EraStatus(StrEnum):
    PENDING = "pending"
    LOCKED = "locked"
    UNRESOLVABLE = "unresolvable"


class CommitStatus(StrEnum):
    KEPT = "kept"
    REJECTED = "rejected"


class TripleKind(StrEnum):
    SFT = "sft"
    DPO = "dpo"


class TripleStage(StrEnum):
    SCOPE = "scope"
    PRECISION = "precision"
    EXECUTE = "execute"
    PLAN = "plan"


class TripleOrigin(StrEnum):
    GOLD = "gold"
    RUN = "run"


class PlanKind(StrEnum):
    STEP = "step"
    META = "meta"
    TEST = "test"


class PlanSource(StrEnum):
    GOLD = "gold"
    RETRIEVAL = "retrieval"
    MODEL = "model"


class DataSource(StrEnum):
    """Where a training row's signal came from (DESIGN.md: every row carries its source).

    Seed 004 §6: a model under 6B parameters cannot bootstrap from ``self`` rows alone.
    """

    GOLD = "gold"          # the real commit (the commit is the teacher)
    TEACHER = "teacher"    # a larger model's runs, before the air gap
    SELF = "self"          # the local model's own resolved runs
    IMPORTED = "imported"  # an external dataset brought by USB (CommitPackFT, ...)


class AdapterSlot(StrEnum):
    """The LoRA adapter slots of seed 004 §3 Stream B; one recipe each in ``adapters/``."""

    SCOPE = "scope"
    PRECISION = "precision"
    PLAN = "plan"
    EXECUTE_CODE = "execute-code"
    TASK_ANALYSIS = "task-analysis"


class ImportFormat(StrEnum):
    """The shapes of external JSONL that ``cra datasets import`` reads (seed 004 §3's cold start)."""

    COMMITPACKFT = "commitpackft"            # old_contents, new_contents, message (CommitPackFT)
    MESSAGES = "messages"                    # {"messages": [...]} ending with the assistant's answer
    PROMPT_COMPLETION = "prompt-completion"  # {"prompt": ..., "completion": ...} (trl's shape)
    SRI = "sri"                              # instruction, input code, search/replace answer (SRI Tuning)


class AdapterAlias(StrEnum):
    """Names that point at one version of a slot (``adapter_aliases.alias``), as in MLflow's
    model registry: ``active`` is what the pipeline and ``cra serve`` use, ``candidate`` what
    ``cra train`` produced last and an evaluation may promote."""

    ACTIVE = "active"
    CANDIDATE = "candidate"


class AdapterAction(StrEnum):
    """What one audit row of the registry records (``adapter_events.action``)."""

    REGISTER = "register"    # cra train stored a new version (and made it the candidate)
    PROMOTE = "promote"      # active moved forward to a chosen version
    ROLLBACK = "rollback"    # active moved back; no file is ever deleted


class TrainingMethod(StrEnum):
    """How an adapter is trained (``adapter_versions.method``; a dataset's ``kind``)."""

    SFT = "sft"
    DPO = "dpo"


class ServeEngine(StrEnum):
    """The servers ``cra serve`` starts, each with its own way of choosing a LoRA per request."""

    LLAMA_CPP_PYTHON = "llama-cpp-python"  # the CPU default: one model alias per adapter
    LLAMA_SERVER = "llama-server"          # --lora per adapter, a request's "lora" list
    VLLM = "vllm"                          # --lora-modules, runtime /v1/load_lora_adapter


class EvalKind(StrEnum):
    """What one evaluation asks (``evaluations.kind``)."""

    CANDIDATE = "candidate"    # is a new version better than the baseline? (promote or keep)
    REGRESSION = "regression"  # is the active version still better than the one before it? (or roll back)


class EvalStatus(StrEnum):
    """Where one evaluation stands (``evaluations.status``)."""

    RUNNING = "running"  # a rerun of the same evaluation resumes it
    DONE = "done"


class EvalDecision(StrEnum):
    """What the gates made of one evaluation (``evaluations.decision``)."""

    PROMOTE = "promote"    # the candidate passed every gate
    KEEP = "keep"          # nothing changes: a candidate that failed a gate, an active version that holds
    ROLLBACK = "rollback"  # the active version regressed against the one before it


class EvalArm(StrEnum):
    """The two sides of a paired evaluation (``evaluation_results.arm``)."""

    CANDIDATE = "candidate"
    BASELINE = "baseline"


class EvalMetric(StrEnum):
    """What an evaluation measures per task (``evaluation_results.metric``), stage level (the
    spec's Gate 1) first, then end to end (Gate 2); ``appliance.evaluation.metrics`` says how."""

    SCOPE_RECALL = "scope_recall"              # scope stage: changed files in its top k
    SYMBOL_RECALL = "symbol_recall"            # precision stage: changed symbols it names
    PLAN_ALIGNMENT = "plan_alignment"          # step plan against the commit
    META_PLAN_ALIGNMENT = "meta_plan_alignment"  # approach plan: files and their order
    TEST_PLAN_ALIGNMENT = "test_plan_alignment"  # test plan against the commit's test patch
    APPLY_RATE = "apply_rate"                  # execute stage: its edits apply to the parent
    RESOLVED_RATE = "resolved_rate"            # the pipeline: runs that made the tests pass
    PASS_AT_K = "pass_at_k"
    STEPS_TO_GREEN = "steps_to_green"          # attempts used (a failure counts max + 1)
    REPEAT_ERROR_RATE = "repeat_error_rate"    # repairs that fail the way an earlier attempt did


class CycleStage(StrEnum):
    """The steps of one day -> sleep -> eval cycle, in order (``cycles.stage``): the stage a
    resumed cycle starts from."""

    DAY = "day"        # harness runs on the tasks not yet run
    PLAN = "plan"      # cra train-plan
    CURATE = "curate"  # cra curate-data
    TRAIN = "train"    # cra train: a candidate version
    EVAL = "eval"      # cra eval: candidate against active, the gates, promote or keep
    DONE = "done"


def values(enum: type[StrEnum]) -> list[str]:
    """The members' strings in declaration order, e.g. for a ``click.Choice``."""
    return [m.value for m in enum]


def sql_in(enum: type[StrEnum]) -> str:
    """``'a', 'b', ...`` for a CHECK (col IN (...)) clause of a migration."""
    return ", ".join(f"'{m.value}'" for m in enum)

