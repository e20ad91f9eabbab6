"""Adapter recipes: the committed ones load, and what cannot be served is refused with the reason."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from appliance.config import Home, ServingConfig
from appliance.errors import BadInput, ConfigError, NotFound
from appliance.status import AdapterSlot, values
from appliance.training.recipe import (
    SOURCE_RECIPES,
    load_recipe,
    recipe_from_dict,
    recipe_path,
    slot_recipe,
)

COMMITTED = sorted(SOURCE_RECIPES.glob("*.toml"))


def _data(**changes: dict) -> dict:
    data = tomllib.loads((SOURCE_RECIPES / "scope.toml").read_text())
    for table, values_ in changes.items():
        data.setdefault(table, {}).update(values_)
    return data


def test_there_is_one_committed_recipe_per_slot_and_each_loads() -> None:
    assert [p.stem for p in COMMITTED] == sorted(values(AdapterSlot))
    for path in COMMITTED:
        recipe = load_recipe(path)
        assert recipe.slot == path.stem and recipe.source == path
        # Qwen-style bases need the end-of-turn token set explicitly (seed 004 §3).
        assert recipe.model.eos_token == "<|im_end|>"
        assert recipe.lora.target_modules == "all-linear" and recipe.cuda.quantization == "4bit"
    assert load_recipe(SOURCE_RECIPES / "plan.toml").training.method == "dpo"


def test_the_home_recipe_wins_over_the_committed_one_and_must_be_for_its_slot(home: Home) -> None:
    assert recipe_path(home, "scope") == SOURCE_RECIPES / "scope.toml"
    mine = home.adapters / "scope.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text((SOURCE_RECIPES / "precision.toml").read_text())
    assert recipe_path(home, "scope") == mine
    with pytest.raises(BadInput, match="for the precision slot, not scope"):
        slot_recipe(home, "scope")
    with pytest.raises(BadInput, match="unknown adapter slot"):
        recipe_path(home, "summarise")


def test_a_typo_is_refused_naming_the_key(tmp_path: Path) -> None:
    data = _data(lora={"rank": 16})
    with pytest.raises(BadInput, match=r"/lora/rank.*not allowed"):
        recipe_from_dict(data, source="adapters/scope.toml")
    bad = tmp_path / "scope.toml"
    bad.write_text("slot = 'scope'\n[model\n")
    with pytest.raises(BadInput, match="not valid TOML"):
        load_recipe(bad)
    with pytest.raises(NotFound):
        load_recipe(tmp_path / "missing.toml")


def test_a_rank_above_what_the_serving_engine_loads_is_refused_with_the_reason() -> None:
    data = _data(lora={"r": 128})
    with pytest.raises(BadInput) as info:
        recipe_from_dict(data, source="scope.toml")
    message = str(info.value)
    assert "/lora/r" in message and "max_lora_rank 64" in message and "vLLM" in message
    assert recipe_from_dict(data, serving=ServingConfig(max_lora_rank=128)).lora.r == 128
    with pytest.raises(ConfigError, match="not a rank engines accept"):
        ServingConfig(max_lora_rank=100)


@pytest.mark.parametrize(("table", "change", "reason"), [
    ("lora", {"modules_to_save": ["lm_head"]}, "could not be served"),
    ("model", {"new_tokens": ["<|plan|>"]}, "resizes the embeddings"),
    ("cuda", {"zero_stage": 3}, "ZeRO-3 breaks"),
    ("training", {"beta": 0.2}, "beta is DPO's"),
])
def test_what_a_per_request_lora_cannot_carry_is_refused(table: str, change: dict, reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        recipe_from_dict(_data(**{table: change}))


def test_the_recipe_hash_ignores_layout_and_follows_content() -> None:
    a = recipe_from_dict(_data())
    assert recipe_from_dict(_data()).sha256 == a.sha256
    assert recipe_from_dict(_data(training={"learning_rate": 1e-4})).sha256 != a.sha256
    again = recipe_from_dict(a.to_dict())
    assert again == a and again.sha256 == a.sha256


def test_a_newer_format_is_refused() -> None:
    data = _data()
    data["format_version"] = 2
    with pytest.raises(BadInput, match="newer than this cra"):
        recipe_from_dict(data)
