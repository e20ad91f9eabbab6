"""Where cra keeps its state, and the settings in ``CRA_HOME/cra.toml``.

Every setting is a dataclass field with a default and a ``help`` text, so ``cra doctor``
and the docs can print them. Every value is typed strictly, as TOML types it: a bool is
``true``/``false`` (never ``"yes"``), an int has no decimal point (``2.5`` is not an int),
a float may be written as an int. A wrong type, an unknown table or key (with the nearest
valid key, found by ``difflib``) is a ``ConfigError`` naming ``cra.toml``, the key and the
fix, never a silently ignored line or a Python ``TypeError``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from appliance.errors import BadInput, ConfigError
from appliance.status import ServeEngine, values

CONFIG_NAME = "cra.toml"
IMPORT_STAGING_PREFIX = "import-"  # var/tmp/import-<name>-*: one corpus import's staging folder


@dataclass(frozen=True)
class Home:
    """The folders of one ``CRA_HOME``; every path cra writes is derived from here."""

    root: Path

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None) -> Home:
        chosen = root if root is not None else os.environ.get("CRA_HOME") or os.getcwd()
        return cls(Path(chosen).expanduser().resolve())

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def db_path(self) -> Path:
        return self.var / "cra.db"

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def envs(self) -> Path:
        return self.var / "envs"

    @property
    def worktrees(self) -> Path:
        return self.var / "worktrees"

    @property
    def logs(self) -> Path:
        return self.var / "logs"

    @property
    def tmp(self) -> Path:
        return self.var / "tmp"

    def import_stagings(self) -> list[Path]:
        """Staging folders of corpus imports: a running one's, or what a killed one left."""
        return sorted(self.tmp.glob(f"{IMPORT_STAGING_PREFIX}*")) if self.tmp.is_dir() else []

    def repo_dir(self, name: str) -> Path:
        return self.corpus / name / "repo"

    def wheelhouse(self, name: str) -> Path:
        return self.packages / name

    def locks_dir(self, name: str) -> Path:
        return self.packages / name / "locks"

    def manifest_path(self, name: str) -> Path:
        return self.manifests / f"{name}.json"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_EXAMPLES = {bool: "true", int: "2", float: "300", str: '"text"'}
_PLURALS = {str: "strings", int: "integers", float: "numbers"}


def _type_error(table: str, key: str, value: Any, expected: str, example: str) -> ConfigError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return ConfigError(f"[{table}] {key} must be {expected}, not {shown} ({type(value).__name__})",
                       hint=f"e.g. {key} = {example}", path=CONFIG_NAME)


def check_value(table: str, key: str, value: Any, annotation: Any) -> Any:
    """``value`` if it has the type ``annotation`` names (bool, int, float, str, list[str]).

    Strict as TOML is: a bool is not an int, an int is not a bool, and a float is not an
    int (``min_files = 2.5`` would silently change the funnel); an int is a fine float
    (``timeout_s = 300``) and is returned as one.
    """
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise _type_error(table, key, value, f"a list of {_PLURALS[item]}", '["..."]')
        return list(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(table, key, value, _TYPE_WORDS[float], _EXAMPLES[float])
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise _type_error(table, key, value, _TYPE_WORDS[int], _EXAMPLES[int])
    if not isinstance(value, annotation):
        raise _type_error(table, key, value, _TYPE_WORDS[annotation], _EXAMPLES[annotation])
    return value


class _Table:
    """What every ``cra.toml`` table shares: its name, and strict types checked on creation."""

    TABLE: ClassVar[str] = ""

    def _check_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, check_value(self.TABLE, f.name, getattr(self, f.name), hints[f.name]))

    def __post_init__(self) -> None:
        self._check_types()

    def _at_least(self, *names: str, low: float = 0) -> None:
        for name in names:
            if getattr(self, name) < low:
                raise ConfigError(f"[{self.TABLE}] {name} must be {low:g} or more, not {getattr(self, name)!r}",
                                  path=CONFIG_NAME)


@dataclass
class MiningConfig(_Table):
    """Thresholds of the commit filter (``harness.filters``)."""

    TABLE: ClassVar[str] = "mining"

    min_message_chars: int = field(
        default=15, metadata=_help("Shortest commit title that can describe a task.")
    )
    max_message_chars: int = field(
        default=2000, metadata=_help("Longest commit message kept (longer ones are changelogs).")
    )
    min_files: int = field(default=2, metadata=_help("Fewest files a kept commit changes (code + test)."))
    max_files: int = field(default=12, metadata=_help("Most files a kept commit changes."))
    min_lines: int = field(default=4, metadata=_help("Fewest added+deleted lines of a kept commit."))
    max_lines: int = field(default=600, metadata=_help("Most added+deleted lines of a kept commit."))
    max_source_files: int = field(
        default=6, metadata=_help("Most non-test .py files a kept commit changes.")
    )

    def __post_init__(self) -> None:
        self._check_types()
        self._at_least(*(f.name for f in fields(self)))
        for lo, hi in (("min_files", "max_files"), ("min_lines", "max_lines"),
                       ("min_message_chars", "max_message_chars")):
            if getattr(self, lo) > getattr(self, hi):
                raise ConfigError(f"[mining] {lo} is larger than {hi}", path=CONFIG_NAME)


@dataclass
class PackagingConfig(_Table):
    """How ``cra corpus add`` locks and downloads dependencies (connected side only)."""

    TABLE: ClassVar[str] = "packaging"

    python: str = field(
        default="", metadata=_help("Python X.Y of the air-gapped box; empty: the one running cra.")
    )
    find_links: list[str] = field(
        default_factory=list,
        metadata=_help("Local wheel folders to use besides (or, with no_index, instead of) PyPI."),
    )
    no_index: bool = field(default=False, metadata=_help("Never ask a package index; use find_links only."))
    use_uv: bool = field(default=True, metadata=_help("Use uv for installs when it is installed."))
    lock_tool: str = field(
        default="auto",
        metadata=_help("auto (uv pip compile when uv is installed, else pip-compile), uv or "
                       "pip-compile: what resolves each dependency era into a hashed lock."),
    )
    lock_workers: int = field(
        default=4, metadata=_help("Dependency eras locked at the same time (each lock is one process).")
    )
    lock_as_of: bool = field(
        default=True,
        metadata=_help("Lock each era with the packages as they were shortly after its last "
                       "commit landed (uv --exclude-newer), not today's; an era whose period "
                       "packages do not install or run here falls back to the newest, and says so."),
    )
    lock_grace_days: int = field(
        default=1, metadata=_help("How long after an era's last commit its packages are taken as of.")
    )
    pythons: list[str] = field(
        default_factory=list,
        metadata=_help("Other Python X.Y the air-gapped box has, besides 'python': an era whose "
                       "requires-python or old packages need one of them is locked for it."),
    )

    def __post_init__(self) -> None:
        self._check_types()
        self._at_least("lock_workers", low=1)
        self._at_least("lock_grace_days")
        if self.lock_tool not in ("auto", "uv", "pip-compile"):
            raise ConfigError(f"[packaging] lock_tool {self.lock_tool!r} is unknown",
                              hint="use auto, uv or pip-compile", path=CONFIG_NAME)
        for py in [self.python, *self.pythons]:
            major, _, minor = py.partition(".")
            if py and not (major == "3" and minor.isdigit()):
                raise ConfigError(f"[packaging] {py!r} is not a Python X.Y", hint="e.g. \"3.11\"",
                                  path=CONFIG_NAME)


PROVIDERS = ("llama_cpp", "openai_compat", "scripted")
STRUCTURED_MODES = ("auto", "json_schema", "json_object_schema", "guided_json", "structured_outputs")


@dataclass
class LLMConfig(_Table):
    """The ``[llm]`` table of ``cra.toml``: which model answers, and how patiently."""

    TABLE: ClassVar[str] = "llm"

    provider: str = field(
        default="",
        metadata=_help("llama_cpp (in process, a GGUF file), openai_compat (a server at "
                       "'endpoint'), or empty: no model, the harness runs the retrieval planner."),
    )
    model: str = field(
        default="",
        metadata=_help("llama_cpp: path of a local .gguf file (never downloaded). "
                       "openai_compat: the model name the server serves."),
    )
    endpoint: str = field(
        default="",
        metadata=_help("openai_compat: base URL of the server, e.g. http://127.0.0.1:8000/v1. "
                       "No default: which host (loopback, LAN) is the user's choice."),
    )
    api_key_env: str = field(
        default="",
        metadata=_help("openai_compat: name of an environment variable holding a bearer token "
                       "(the token itself never goes into cra.toml or the DB)."),
    )
    n_ctx: int = field(default=4096, metadata=_help("llama_cpp: context window in tokens."))
    n_threads: int = field(default=0, metadata=_help("llama_cpp: CPU threads; 0 lets llama.cpp choose."))
    timeout_s: float = field(
        default=300.0,
        metadata=_help("Seconds one request may take (openai_compat: per socket read) "
                       "before it is a recorded timeout; 0: no limit."),
    )
    max_retries: int = field(
        default=2, metadata=_help("Retries of a request after a timeout, a server error or a refused connection."),
    )
    retry_backoff_s: float = field(
        default=1.0, metadata=_help("Wait before the first retry; doubled for each further one (at most 30 s)."),
    )
    structured_output: str = field(
        default="auto",
        metadata=_help("openai_compat: how a JSON schema is sent. auto: OpenAI's "
                       "response_format json_schema, falling back to llama-cpp-python's "
                       "json_object+schema when the server refuses it; or one of "
                       "json_schema, json_object_schema, guided_json (vLLM < 0.11), "
                       "structured_outputs (vLLM >= 0.11)."),
    )
    check_models: bool = field(
        default=True,
        metadata=_help("openai_compat: check that the model (or adapter) name is listed by "
                       "the server's /v1/models before using it (llama-cpp-python's server "
                       "silently answers with its default model for an unknown name)."),
    )

    def __post_init__(self) -> None:
        self._check_types()
        self._at_least("timeout_s", "retry_backoff_s", "max_retries", "n_ctx", "n_threads")
        where = "[llm]"
        if self.provider and self.provider not in PROVIDERS:
            raise ConfigError(f"{where} provider {self.provider!r} is unknown",
                              hint=f"use one of {', '.join(PROVIDERS[:2])}, or leave it empty", path=CONFIG_NAME)
        if self.structured_output not in STRUCTURED_MODES:
            raise ConfigError(f"{where} structured_output {self.structured_output!r} is unknown",
                              hint=f"use one of {', '.join(STRUCTURED_MODES)}", path=CONFIG_NAME)
        if self.provider == "openai_compat":
            if not self.endpoint:
                raise ConfigError(f"{where} provider openai_compat needs an endpoint",
                                  hint="e.g. endpoint = \"http://127.0.0.1:8000/v1\"", path=CONFIG_NAME)
            try:
                check_endpoint(self.endpoint)
            except BadInput as exc:
                raise ConfigError(f"{where} endpoint: {exc.message}", hint=exc.hint, path=CONFIG_NAME) from exc
        if self.provider == "llama_cpp" and not self.model:
            raise ConfigError(f"{where} provider llama_cpp needs model = the path of a .gguf file",
                              path=CONFIG_NAME)

    @property
    def configured(self) -> bool:
        """False: no model; the harness plans from retrieval alone."""
        return bool(self.provider)

    def with_flags(self, *, model: str | None = None, endpoint: str | None = None) -> LLMConfig:
        """The CLI's ``--model PATH`` (llama_cpp) or ``--endpoint URL`` (openai_compat) on top.

        With ``--endpoint`` the served model name stays ``model`` from cra.toml (or is
        given with ``--model`` as a name). A bad URL is ``BadInput`` naming ``--endpoint``
        (not cra.toml, which may well be right).
        """
        if endpoint:
            check_endpoint(endpoint, what="--endpoint")
        if model and endpoint:
            return replace(self, provider="openai_compat", endpoint=endpoint, model=model)
        if endpoint:
            return replace(self, provider="openai_compat", endpoint=endpoint)
        if model:
            return replace(self, provider="llama_cpp", model=model)
        return self


def check_endpoint(url: str, *, what: str = "endpoint") -> str:
    """An ``http(s)://host[:port][/path]`` URL, or ``BadInput`` naming it (as ``what``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{what} {url!r} is not an http(s) URL",
                       hint="give the server's base URL, e.g. http://127.0.0.1:8000/v1")
    return url


DEFAULT_TEST_TIMEOUT_S = 300.0


@dataclass
class HarnessConfig(_Table):
    """The ``[harness]`` table: how validation and agent runs use the sandbox and the DB."""

    TABLE: ClassVar[str] = "harness"

    test_timeout_s: float = field(
        default=DEFAULT_TEST_TIMEOUT_S,
        metadata=_help("Seconds one sandboxed pytest run (validation, a candidate's check) may take "
                       "before it is a recorded timeout; --timeout overrides it."),
    )
    lease_s: float = field(
        default=120.0,
        metadata=_help("Seconds a unit of work claimed by a process (a commit of 'cra harness validate', "
                       "a run of 'cra harness run') stays its own without a heartbeat; after that "
                       "another process takes it over."),
    )

    def __post_init__(self) -> None:
        self._check_types()
        self._at_least("test_timeout_s", "lease_s", low=1)


SLOTS = ("scope", "precision", "plan", "execute-code", "task-analysis")  # = status.AdapterSlot
MIN_SFT = {"scope": 1000, "precision": 1000, "plan": 500, "execute-code": 1000, "task-analysis": 500}
MIN_DPO = {"scope": 0, "precision": 0, "plan": 300, "execute-code": 500, "task-analysis": 0}


@dataclass
class TrainingConfig(_Table):
    """The ``[training]`` table: what ``cra train-plan`` calls enough data, how
    ``cra curate-data`` filters, balances and mixes it (seed 004 §5 and §6), and what
    ``cra train`` needs besides a recipe and a dataset."""

    TABLE: ClassVar[str] = "training"

    min_sft: dict[str, int] = field(
        default_factory=lambda: dict(MIN_SFT),
        metadata=_help("Fewest SFT rows per adapter slot before train-plan calls it enough "
                       "(LIMA trained on 1,000 curated examples; a plan is costlier to make)."),
    )
    min_dpo: dict[str, int] = field(
        default_factory=lambda: dict(MIN_DPO),
        metadata=_help("Fewest DPO pairs per slot before train-plan calls it enough; 0: the slot "
                       "trains with SFT only (seed 004 §3: DPO for execute-code and planning)."),
    )
    near_dup_threshold: float = field(
        default=0.85, metadata=_help("Two rows are near duplicates when both their prompts and their "
                                     "answers are at least this similar (estimated Jaccard of 8-byte shingles)."),
    )
    domain_cap: float = field(
        default=0.2, metadata=_help("Largest share of a dataset's rows from one domain (seed 004 §5: max 20%)."),
    )
    replay_share: float = field(
        default=0.15, metadata=_help("Share of a new dataset's rows replayed from earlier datasets of the "
                                     "same slot (seed 004 §5: 10-20%)."),
    )
    valid_share: float = field(
        default=0.1, metadata=_help("Share of rows, the newest by commit date, held out for validation."),
    )
    max_self_share: float = field(
        default=0.5, metadata=_help("Most of a dataset that may be self-generated by a model under "
                                    "small_model_params_b before curate-data refuses it (seed 004 §6)."),
    )
    small_model_params_b: float = field(
        default=6.0, metadata=_help("Models below this many billion parameters cannot bootstrap from "
                                    "their own outputs alone (seed 004 §6: sub-6B)."),
    )
    teacher_models: list[str] = field(
        default_factory=list, metadata=_help("Names (fnmatch patterns) of the models whose runs are teacher "
                                             "data; any other model's runs are self-generated."),
    )
    model_params_b: dict[str, float] = field(
        default_factory=dict, metadata=_help("Parameters (billions) per model name; unlisted names are read "
                                             "from the name ('...-3B...'), else counted as small."),
    )
    dpo_min_margin: float = field(
        default=0.0, metadata=_help("Plan DPO pairs whose alignment margin is below this are left out."),
    )
    holdout_start: str = field(
        default="", metadata=_help("YYYY-MM-DD: the evaluation holdout starts here; curate-data refuses "
                                   "a cutoff after it. Empty: no holdout declared."),
    )
    cutoff: str = field(
        default="", metadata=_help("Default --cutoff of curate-data (YYYY-MM-DD): only commits authored "
                                   "before it become training rows."),
    )
    seed: int = field(default=0, metadata=_help("Seed of the deterministic sampling (replay, balancing)."))

    llama_cpp_dir: str = field(
        default="",
        metadata=_help("cra train: llama.cpp's converter (convert_lora_to_gguf.py) for the GGUF copy of "
                       "every adapter: a llama.cpp checkout, or the llama-cpp-python sdist (.tar.gz) that "
                       "vendors it. Empty: $CRA_LLAMA_CPP_SRC. Never downloaded."),
    )
    gguf: bool = field(default=True, metadata=_help("cra train: write a GGUF copy of every adapter "
                                                    "(llama.cpp serving needs it)."))
    keep_checkpoints: int = field(
        default=2, metadata=_help("cra train: checkpoints kept while training (the newest; --resume uses the last)."),
    )

    def _check_types(self) -> None:
        """``check_value`` for the plain fields; the tables (dicts) are checked below."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            if typing.get_origin(hints[f.name]) is not dict:
                setattr(self, f.name, check_value(self.TABLE, f.name, getattr(self, f.name), hints[f.name]))

    def __post_init__(self) -> None:
        self._check_types()
        self._at_least("keep_checkpoints", low=1)
        where = "[training]"
        for name in ("min_sft", "min_dpo"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ConfigError(f"{where} {name} must be a table of slot = count", path=CONFIG_NAME)
            for slot, count in value.items():
                if slot not in SLOTS:
                    raise ConfigError(f"{where} {name}: unknown slot '{slot}'", hint=f"use one of {', '.join(SLOTS)}",
                                      path=CONFIG_NAME)
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise ConfigError(f"{where} {name}.{slot} must be an integer >= 0", path=CONFIG_NAME)
            setattr(self, name, {**(MIN_SFT if name == "min_sft" else MIN_DPO), **value})  # a slot not named keeps its default
        for name, lo, hi in (("near_dup_threshold", 0.5, 1.0), ("domain_cap", 0.01, 1.0), ("replay_share", 0.1, 0.2),
                             ("valid_share", 0.0, 0.5), ("max_self_share", 0.0, 1.0), ("dpo_min_margin", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise ConfigError(f"{where} {name} must be a number in [{lo}, {hi}]", path=CONFIG_NAME)
        if not isinstance(self.small_model_params_b, int | float) or self.small_model_params_b <= 0:
            raise ConfigError(f"{where} small_model_params_b must be a positive number", path=CONFIG_NAME)
        if not isinstance(self.teacher_models, list) or not all(isinstance(m, str) for m in self.teacher_models):
            raise ConfigError(f"{where} teacher_models must be a list of model names", path=CONFIG_NAME)
        if not isinstance(self.model_params_b, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in self.model_params_b.values()):
            raise ConfigError(f"{where} model_params_b must map model names to positive numbers", path=CONFIG_NAME)
        for name in ("holdout_start", "cutoff"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ConfigError(f"{where} {name} must be a date string (YYYY-MM-DD)", path=CONFIG_NAME)
            if value:
                try:
                    datetime.fromisoformat(value)
                except ValueError as exc:
                    raise ConfigError(f"{where} {name} {value!r} is not a date", hint="use YYYY-MM-DD",
                                      path=CONFIG_NAME) from exc
def _default_primary() -> dict[str, str]:
    return {"scope": "scope_recall", "precision": "symbol_recall", "plan": "plan_alignment",
            "execute-code": "resolved_rate", "task-analysis": "resolved_rate"}


@dataclass
class EvaluationConfig(_Table):
    """The ``[evaluation]`` table: how ``cra eval`` holds out, measures and decides, and the
    gates ``cra cycle`` applies (seed 004 §4-§6, seed 002's frozen set and rollback)."""

    TABLE: ClassVar[str] = "evaluation"

    min_holdout: int = field(
        default=10, metadata=_help("Fewest held-out tasks an evaluation decides on; fewer is refused "
                                   "(the refusal also says how many the configured effect needs)."),
    )
    effect: float = field(
        default=0.1, metadata=_help("Smallest difference in the primary metric worth detecting; with "
                                    "power and planning_sd it gives the holdout size an evaluation needs."),
    )
    power: float = field(default=0.8, metadata=_help("Chance of detecting a true difference of 'effect'."))
    planning_sd: float = field(
        default=0.5, metadata=_help("Assumed standard deviation of one task's paired difference (0.5: the "
                                    "largest a [0, 1] metric can have, the conservative planning value)."),
    )
    level: float = field(default=0.95, metadata=_help("Confidence level of every interval."))
    bootstrap_resamples: int = field(
        default=2000, metadata=_help("Resamples of the paired bootstrap behind each interval."),
    )
    seed: int = field(default=0, metadata=_help("Seed of the bootstrap and of the frozen set's choice."))
    samples: int = field(
        default=1, metadata=_help("Pipeline runs per task and side (the k of pass@k can be at most this)."),
    )
    pass_k: int = field(default=1, metadata=_help("k of pass@k (unbiased estimator, Chen et al. 2021)."))
    temperature: float = field(default=0.2, metadata=_help("Sampling temperature of every evaluation call."))
    max_attempts: int = field(default=3, metadata=_help("Attempts per pipeline run (the first plus repairs)."))
    scope_k: int = field(default=3, metadata=_help("k of scope recall@k: files of the scope answer counted."))
    end_to_end: bool = field(
        default=True, metadata=_help("Run the whole pipeline on the holdout (Gate 2) besides the stage metrics."),
    )
    primary: dict[str, str] = field(
        default_factory=_default_primary,
        metadata=_help("The metric that decides, per adapter slot (see 'cra eval --help' for the names)."),
    )
    max_loss: float = field(
        default=0.0, metadata=_help("Promote only when the primary metric's interval lies above -max_loss: "
                                    "it excludes a loss larger than this."),
    )
    frozen_size: int = field(
        default=5, metadata=_help("Tasks of the frozen regression set, chosen once from the first "
                                  "evaluation's holdout and checked on every evaluation after it."),
    )
    frozen_tolerance: float = field(
        default=0.05, metadata=_help("Largest drop of any metric on the frozen set a promotion tolerates."),
    )
    rollback: bool = field(
        default=True, metadata=_help("Roll the active version back by itself when a regression check finds "
                                     "it worse than the version before it."),
    )
    holdout_share: float = field(
        default=0.3, metadata=_help("cra cycle without --cutoff: the latest share of validated tasks is "
                                    "held out, the rest trains."),
    )

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            if f.name != "primary":  # a table of its own, checked below
                setattr(self, f.name, check_value(self.TABLE, f.name, getattr(self, f.name), hints[f.name]))
        self._at_least("min_holdout", "bootstrap_resamples", "samples", "pass_k", "max_attempts", "scope_k", low=1)
        self._at_least("frozen_size")
        where = "[evaluation]"
        for name, lo, hi in (("effect", 0.0, 1.0), ("power", 0.5, 1.0), ("level", 0.5, 1.0),
                             ("planning_sd", 0.0, 1.0), ("holdout_share", 0.0, 1.0)):
            if not lo < getattr(self, name) < hi:
                raise ConfigError(f"{where} {name} must be a number between {lo:g} and {hi:g}", path=CONFIG_NAME)
        for name in ("max_loss", "frozen_tolerance"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{where} {name} must be a number in [0, 1]", path=CONFIG_NAME)
        if not 0 <= self.temperature <= 2:
            raise ConfigError(f"{where} temperature must be a number in [0, 2]", path=CONFIG_NAME)
        if self.pass_k > self.samples:
            raise ConfigError(f"{where} pass_k {self.pass_k} is more than samples {self.samples}",
                              hint="pass@k needs at least k runs per task: raise samples", path=CONFIG_NAME)
        from appliance.status import AdapterSlot, EvalMetric, values

        if not isinstance(self.primary, dict):
            raise ConfigError(f"{where} primary must be a table of slot = metric",
                              hint='e.g. primary = { scope = "scope_recall" }', path=CONFIG_NAME)
        for slot, metric in self.primary.items():
            if slot not in values(AdapterSlot):
                raise ConfigError(f"{where} primary: unknown slot '{slot}'",
                                  hint=f"use one of {', '.join(values(AdapterSlot))}", path=CONFIG_NAME)
            if metric not in values(EvalMetric):
                raise ConfigError(f"{where} primary.{slot}: unknown metric {metric!r}",
                                  hint=f"use one of {', '.join(values(EvalMetric))}", path=CONFIG_NAME)
        self.primary = {**_default_primary(), **self.primary}


# vLLM's --max-lora-rank accepts only these (vllm/config/lora.py, MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ENGINES = tuple(values(ServeEngine))


@dataclass
class ServingConfig(_Table):
    """The ``[serving]`` table: how ``cra serve`` starts an engine with the registry's adapters."""

    TABLE: ClassVar[str] = "serving"

    engine: str = field(
        default="llama-cpp-python",
        metadata=_help("llama-cpp-python (CPU default), llama-server (llama.cpp's binary) or vllm (CUDA)."),
    )
    port: int = field(default=8000, metadata=_help("Loopback port the engine listens on (always 127.0.0.1)."))
    max_lora_rank: int = field(
        default=64,
        metadata=_help("Highest LoRA rank the serving engine loads (vLLM's --max-lora-rank: one of "
                       "1, 8, 16, 32, 64, 128, 256, 320, 512); a recipe above it is refused."),
    )
    poll_s: float = field(
        default=5.0, metadata=_help("How often cra serve re-reads the registry to apply promotes and rollbacks."),
    )
    n_ctx: int = field(default=4096, metadata=_help("llama.cpp engines: context window in tokens."))
    llama_server: str = field(
        default="llama-server", metadata=_help("The llama-server binary (a path, or a name on PATH)."),
    )
    extra_args: list[str] = field(
        default_factory=list,
        metadata=_help("More arguments for the engine, as is (e.g. [\"--gpu-memory-utilization\", \"0.8\"])."),
    )
    startup_timeout_s: float = field(
        default=900.0, metadata=_help("Seconds the engine may take to answer /v1/models after starting."),
    )

    def __post_init__(self) -> None:
        self._check_types()
        self._at_least("port", "n_ctx", low=1)
        self._at_least("poll_s", "startup_timeout_s", low=0.1)
        if self.engine not in ENGINES:
            raise ConfigError(f"[serving] engine {self.engine!r} is unknown", hint=f"use one of {', '.join(ENGINES)}",
                              path=CONFIG_NAME)
        if self.max_lora_rank not in VLLM_LORA_RANKS:
            raise ConfigError(f"[serving] max_lora_rank {self.max_lora_rank!r} is not a rank engines accept",
                              hint=f"use one of {', '.join(map(str, VLLM_LORA_RANKS))}", path=CONFIG_NAME)
        if self.port > 65535:
            raise ConfigError(f"[serving] port {self.port} is not a TCP port", hint="use 1 to 65535", path=CONFIG_NAME)


@dataclass
class Settings:
    """All of ``cra.toml``: one field per table."""

    mining: MiningConfig = field(default_factory=MiningConfig)
    packaging: PackagingConfig = field(default_factory=PackagingConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    harness: HarnessConfig = field(default_factory=HarnessConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


def _nearest(key: str, known: list[str]) -> str:
    """The closest known key (difflib); among close ones, a transposition (``max_flies``) first."""
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    close.sort(key=lambda k: sorted(k) != sorted(key))  # stable: otherwise difflib's order
    return f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """``cls`` from a TOML table; unknown keys are refused with the nearest valid one."""
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"unknown setting '{where}{key}'",
                hint=f"{_nearest(f'{where}{key}', [where + k for k in known])} 'cra doctor' lists every setting",
                path=CONFIG_NAME,
            )
        f = known[key]
        table = f.default_factory if f.default_factory is not MISSING else None
        if isinstance(table, type) and is_dataclass(table):
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}' must be a table: [{key}] on a line of its own, then its keys",
                                  path=CONFIG_NAME)
            kwargs[key] = _build(table, value, f"{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def load_settings(home: Home) -> Settings:
    """Read ``CRA_HOME/cra.toml``; a missing file means all defaults. Raises ``ConfigError``."""
    path = home.config_path
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read: {exc}", path=path, hint="make it a readable UTF-8 file") from exc
    try:
        return _build(Settings, data, "")
    except ConfigError as exc:
        exc.path = path  # the real file, not just its name
        raise


def describe_settings(settings: Settings) -> list[tuple[str, Any, str]]:
    """(key, value, help) for every setting, for ``cra doctor`` and the docs."""
    rows: list[tuple[str, Any, str]] = []
    for section in fields(settings):
        obj = getattr(settings, section.name)
        for f in fields(obj):
            rows.append((f"{section.name}.{f.name}", getattr(obj, f.name), f.metadata.get("help", "")))
    return rows
