"""Typed errors, one place.

The CLI maps these to exit codes and prints ``str(error)`` as one line; every message
names the file or argument at fault and what to do next, so a user on an air-gapped box
never needs a traceback to know what went wrong.
"""

from __future__ import annotations

from pathlib import Path


class CraError(Exception):
    """Base of every error cra expects. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, path: Path | str | None = None):
        self.message = message
        self.hint = hint
        self.path = Path(path) if path is not None else None
        super().__init__(message)

    def __str__(self) -> str:
        text = self.message
        if self.path is not None and str(self.path) not in text:
            text = f"{self.path}: {text}"
        if self.hint:
            text = f"{text} ({self.hint})"
        return text


class BadInput(CraError):
    """The user's input (a file, a bundle, a manifest, an argument) is wrong: exit 2."""

    exit_code = 2


class ConfigError(BadInput):
    """``cra.toml`` or a flag holds a value cra cannot use."""


class ManifestError(BadInput):
    """A manifest.json that does not match ``manifests/schema.json``."""


class BundleError(BadInput):
    """A USB bundle that is missing, truncated or altered."""


class NotFound(BadInput):
    """A repo, commit or file named by the user does not exist."""


class Failed(CraError):
    """A step that should have worked did not (a clone, a lock, a wheel download): exit 1."""


class InfraError(Failed):
    """The infrastructure failed, not the model and not the input: a model server that cannot
    be reached, answers 5xx or times out after every retry, an environment that breaks
    mid-run. A run that meets one ends ``infra_error``: never counted in a resolved rate,
    never a rejected DPO answer, retried by the next run (SWE-bench keeps these apart the
    same way: ``swebench/harness/infra_failure.py``)."""


class MissingWheel(Failed):
    """The wheelhouse cannot satisfy a requirement offline."""


class UnbuildableSdist(MissingWheel):
    """Pins with no wheel for the target Python whose sdists failed to build; ``names``
    are their distribution names (canonical)."""

    def __init__(self, message: str, *, names: tuple[str, ...], hint: str | None = None):
        super().__init__(message, hint=hint)
        self.names = names


class LockError(Failed):
    """pip-compile could not resolve a set of requirements."""


class BrokenTools(Failed):
    """An era's locked test tools install but do not run on the target Python."""


class GitError(Failed):
    """A git command failed."""


class MissingExtra(Failed):
    """An optional part (llama, train, gpu) is not installed."""

    def __init__(self, what: str, extra: str, *, detail: str = ""):
        more = f": {detail}" if detail else ""
        super().__init__(
            f"{what} needs the optional '{extra}' extra{more}",
            hint=f"install it with: pip install 'cra[{extra}]'",
        )


class LeakError(BadInput):
    """Training data would reach into the evaluation holdout (DESIGN.md: chronological only)."""


class GuardrailError(BadInput):
    """A dataset the spec's self-improvement guardrails forbid (seed 004 §6), unless forced."""


class AdapterTampered(BadInput):
    """An adapter version whose files no longer match the sha256 recorded when it was trained."""


class Interrupted(CraError):
    """Ctrl-C stopped a long job at a point it can resume from: exit 130, like a shell."""

    exit_code = 130


class HoldoutTooSmall(BadInput):
    """An evaluation's holdout has too few tasks to decide anything."""
