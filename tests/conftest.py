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
