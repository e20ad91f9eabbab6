"""Shared fixtures: a temporary CRA_HOME and its database, and the network marker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/repo_builder.py

from appliance.config import Home
from appliance.db.core import Database


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CRA_TEST_OFFLINE") == "1":
        skip = pytest.mark.skip(reason="CRA_TEST_OFFLINE=1: this test needs PyPI")
        for item in items:
            if "network" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pytest, its dependencies, setuptools and wheel: downloaded once per session."""
    if os.environ.get("CRA_TEST_OFFLINE") == "1":
        pytest.skip("CRA_TEST_OFFLINE=1: the wheel cache needs PyPI")
    from wheels import download_wheels

    return download_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("CRA_HOME", str(root))
    return Home(root)


@pytest.fixture
def db(home: Home):
    database = Database(home.db_path)
    yield database
    database.close()


@pytest.fixture(scope="session")
def trained_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CRA_HOME whose plan slot has v1, trained once per session by ``cra train`` (SFT on the
    tiny model, 16 steps): copy the folder before changing anything in it."""
    from curated import plan_sft_rows, tiny_recipe, write_dataset
    from tinymodel import converter_dir, tiny_model

    from appliance.cli import main

    model = tiny_model()
    root = tmp_path_factory.mktemp("trained") / "home"
    home = Home(root)
    root.mkdir()
    (root / "cra.toml").write_text(f'[training]\nllama_cpp_dir = "{converter_dir()}"\n')
    tiny_recipe(home, model, steps=16)
    with Database(home.db_path) as db:
        dataset = write_dataset(db, home, slot="plan", kind="sft", train=plan_sft_rows(48),
                                valid=plan_sft_rows(8, seed=99))
    assert main(["--home", str(root), "train", "plan", "--dataset", str(dataset)]) == 0
    return root
