"""Where a training row's signal came from, and whether its model is small (seed 004 §6).

A gold triple came from the commit itself. A run-derived one came from the models of its
runs: a *teacher* when any of them is listed in ``[training] teacher_models`` (fnmatch
patterns), else *self*-generated. A model's size comes from ``[training] model_params_b``,
else from its name ("Qwen2.5-Coder-3B" is 3B); a model of unknown size counts as small,
since the guardrail exists for the case nobody checked.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache

from appliance.config import TrainingConfig
from appliance.status import DataSource, TripleStage

STAGE_SLOTS = {TripleStage.SCOPE: "scope", TripleStage.PRECISION: "precision", TripleStage.PLAN: "plan",
               TripleStage.EXECUTE: "execute-code"}
SLOT_STAGES = {slot: stage.value for stage, slot in STAGE_SLOTS.items()}
_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")


def params_b(model: str, config: TrainingConfig) -> float | None:
    """Billions of parameters of ``model``, from the settings or its name; None if unknown."""
    if model in config.model_params_b:
        return float(config.model_params_b[model])
    sizes = [float(s) for s in _SIZE.findall(model.rsplit("/", 1)[-1])]
    return max(sizes) if sizes else None


class SourceRules:
    """Classifies rows by the models behind them, with the settings of one ``[training]`` table."""

    def __init__(self, config: TrainingConfig):
        self.config = config
        self.classify = lru_cache(maxsize=4096)(self._classify)
        self.small = lru_cache(maxsize=4096)(self._small)

    def is_teacher(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, p) for p in self.config.teacher_models)

    def _classify(self, models: str) -> str:
        """``models``: comma-separated model names of a row's runs ('' for a gold row)."""
        names = [m for m in models.split(",") if m]
        if not names:
            return DataSource.GOLD.value
        return DataSource.TEACHER.value if any(self.is_teacher(m) for m in names) else DataSource.SELF.value

    def _small(self, models: str) -> bool:
        """True when every model behind a self-generated row is under the small-model size."""
        names = [m for m in models.split(",") if m]
        limit = self.config.small_model_params_b
        return bool(names) and all((params_b(m, self.config) or 0.0) < limit for m in names)
