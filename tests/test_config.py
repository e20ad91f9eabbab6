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
        ("[mining]\nmax_flies = 3\n", r"unknown setting 'mining.max_flies' \(did you mean 'mining.max_files'\?"),
        ("[minning]\n", r"unknown setting 'minning' \(did you mean 'mining'\?"),
        ("[llm]\ntimeout = 30\n", r"did you mean 'llm.timeout_s'\?"),
        ("[harness]\ntest_timeout = 30\n", r"did you mean 'harness.test_timeout_s'\?"),
        ("colour = 1\n", r"unknown setting 'colour' \(known: evaluation, harness, llm, mining, packaging"),
        ("mining = 3\n", r"'mining' must be a table"),
        ("[mining\n", "not valid TOML"),
        ("[mining]\nmin_files = 9\nmax_files = 2\n", "min_files is larger than max_files"),
        # The handed cases of issue 11: each silently accepted, or a Python TypeError, before.
        ("[mining]\nmin_files = 2.5\n", r"\[mining\] min_files must be an integer, not 2.5 \(float\) \(e.g. min_files = 2\)"),
        ('[packaging]\nno_index = "yes"\n', r"\[packaging\] no_index must be true or false, not 'yes' \(str\)"),
        ('[mining]\nmin_files = "two"\n', r"\[mining\] min_files must be an integer, not 'two' \(str\)"),
        ("[llm]\nmax_retries = true\n", r"\[llm\] max_retries must be an integer, not True \(bool\)"),
        ("[llm]\nretry_backoff_s = false\n", r"\[llm\] retry_backoff_s must be a number, not False"),
        ("[llm]\nprovider = 3\n", r"\[llm\] provider must be a string, not 3 \(int\)"),
        ('[packaging]\nfind_links = "wheels"\n', r"\[packaging\] find_links must be a list of strings"),
        ('[packaging]\nfind_links = ["a", 3]\n', r"find_links must be a list of strings, not \['a', 3\]"),
        ("[mining]\nmax_lines = -5\n", r"\[mining\] max_lines must be 0 or more"),
        ("[harness]\ntest_timeout_s = 0\n", r"\[harness\] test_timeout_s must be 1 or more"),
        ("[evaluation]\npass_k = 3\n", r"\[evaluation\] pass_k 3 is more than samples 1"),
        ("[evaluation]\nmin_holdout = 0\n", r"\[evaluation\] min_holdout must be 1 or more"),
        ('[evaluation]\nprimary = { scope = "recall" }\n', r"primary.scope: unknown metric 'recall'"),
        ('[evaluation]\nprimary = "scope"\n', r"\[evaluation\] primary must be a table of slot = metric"),
        ("[evaluation]\neffect = 2\n", r"\[evaluation\] effect must be a number between 0 and 1"),
        ('[llm]\nprovider = "openai_compat"\nendpoint = "ftp://x"\n', r"\[llm\] endpoint: .*not an http\(s\) URL"),
        ("[packaging]\nlock_tool = \"poetry\"\n", "lock_tool 'poetry' is unknown"),
        ("[packaging]\nlock_workers = 0\n", r"\[packaging\] lock_workers must be 1 or more"),
        ("[packaging]\npythons = [\"3\"]\n", "'3' is not a Python X.Y"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(home: Home, text: str, match: str) -> None:
    home.config_path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_settings(home)
    assert str(home.config_path) in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_types_are_those_of_toml_an_int_is_a_fine_float(home: Home) -> None:
    home.config_path.write_text("[llm]\ntimeout_s = 30\n[harness]\ntest_timeout_s = 45\nlease_s = 2.5\n"
                                '[packaging]\nfind_links = ["/w"]\nno_index = false\n')
    s = load_settings(home)
    assert s.llm.timeout_s == 30.0 and isinstance(s.llm.timeout_s, float)
    assert s.harness.test_timeout_s == 45.0 and s.harness.lease_s == 2.5
    assert s.packaging.find_links == ["/w"] and s.packaging.no_index is False


def test_every_table_and_key_has_help_and_a_default_of_its_own_type() -> None:
    import typing
    from dataclasses import fields

    from appliance.config import Settings

    s = Settings()
    for table in fields(s):
        obj = getattr(s, table.name)
        hints = typing.get_type_hints(type(obj))
        assert type(obj).TABLE == table.name
        for f in fields(obj):
            assert f.metadata.get("help"), f"{table.name}.{f.name} has no help"
            tp = typing.get_origin(hints[f.name]) or hints[f.name]
            assert isinstance(getattr(obj, f.name), tp), f"{table.name}.{f.name}"


def test_home_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRA_HOME", str(tmp_path))
    h = Home.from_env()
    assert h.db_path == tmp_path / "var" / "cra.db"
    assert h.wheelhouse("x") == tmp_path / "packages" / "x"


def test_training_settings_are_checked_and_named(home) -> None:
    from appliance.config import load_settings
    from appliance.errors import ConfigError

    home.config_path.write_text('[training]\nmin_sft = {execute-code = 50}\nteacher_models = ["qwen3.5-*"]\n')
    settings = load_settings(home)
    assert settings.training.min_sft["execute-code"] == 50 and settings.training.min_sft["scope"] == 1000
    assert settings.training.teacher_models == ["qwen3.5-*"]
    for bad, where in (("replay_share = 0.5", "replay_share"), ('min_dpo = {nope = 1}', "unknown slot 'nope'"),
                       ('holdout_start = "soon"', "holdout_start"), ("domain_cap = 0", "domain_cap"),
                       ("cap = 1", "unknown setting 'training.cap'")):
        home.config_path.write_text(f"[training]\n{bad}\n")
        with pytest.raises(ConfigError, match=where):
            load_settings(home)
