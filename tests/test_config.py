from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import Home, describe_settings, load_settings
from appliance.errors import ConfigError


def test_defaults_without_a_file(home: Home) -> None:
    s = load_settings(home)
    assert s.mining.max_files >= s.mining.min_files
    keys = [k for k, _, _ in describe_settings(s)]
    assert "mining.max_lines" in keys and all(h for _, _, h in describe_settings(s))


def test_file_overrides_defaults(home: Home) -> None:
    home.config_path.write_text("[mining]\nmax_files = 30\n[packaging]\nno_index = true\n")
    s = load_settings(home)
    assert s.mining.max_files == 30 and s.packaging.no_index is True


@pytest.mark.parametrize(
    "text, match",
    [
        ("[mining]\nmax_flies = 3\n", "unknown setting 'mining.max_flies'"),
        ("[minning]\n", "unknown setting 'minning'"),
        ("[mining\n", "not valid TOML"),
        ("[mining]\nmin_files = 9\nmax_files = 2\n", "min_files is larger than max_files"),
    ],
)
def test_bad_config_names_the_problem(home: Home, text: str, match: str) -> None:
    home.config_path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(home)


def test_home_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRA_HOME", str(tmp_path))
    h = Home.from_env()
    assert h.db_path == tmp_path / "var" / "cra.db"
    assert h.wheelhouse("x") == tmp_path / "packages" / "x"
