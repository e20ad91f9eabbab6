"""What the user touches: every command has help, errors are one line with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from appliance.cli import cli, main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        out.append(path)
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, path))
    return out


ALL_COMMANDS = _commands(cli)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_every_command_explains_itself(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: cra " + " ".join(path) in out
    cmd: click.Command = cli
    for part in path:
        cmd = cmd.commands[part]  # type: ignore[attr-defined]
    assert cmd.help and len(cmd.help.split()) >= 5, f"cra {' '.join(path)} needs a real help text"
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"cra {' '.join(path)} {param.opts[0]} has no help"


def test_listings_offer_json() -> None:
    listing = [p for p in ALL_COMMANDS if p[-1] in {"list", "funnel", "catalog", "doctor"}]
    assert listing
    for path in listing:
        cmd: click.Command = cli
        for part in path:
            cmd = cmd.commands[part]  # type: ignore[attr-defined]
        assert any("--json" in p.opts for p in cmd.params if isinstance(p, click.Option)), path


def test_unknown_repo_is_exit_2_with_one_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corpus", "funnel", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no repo package named 'nope'" in err


def test_bad_usage_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corpus", "add"]) == 2
    assert "SOURCE" in capsys.readouterr().err


def test_bad_config_is_exit_2_naming_the_file(home, capsys: pytest.CaptureFixture[str]) -> None:
    home.config_path.write_text("[mining]\nnope = 1\n")
    assert main(["corpus", "add", "/nonexistent/repo"]) == 2
    assert "cra.toml" in capsys.readouterr().err


def test_doctor_json_reports_state(home, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["home"] == str(home.root)
    names = {c["name"] for c in data["optional"]}
    assert {"llama-cpp-python", "peft", "trl", "vllm"} <= names
    missing = [c for c in data["optional"] if not c["ok"]]
    assert all(c["hint"].startswith("pip install 'cra[") for c in missing)


def test_console_script_runs_without_traceback(home) -> None:
    exe = Path(sys.executable).with_name("cra")
    if not exe.exists():
        pytest.skip("cra is not installed as a console script in this environment")
    out = subprocess.run([str(exe), "corpus", "funnel", "nope"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_supplement_without_a_model_says_what_to_pass(home, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["harness", "validate", "lib", "--supplement"]) == 2
    assert "--supplement needs a model" in capsys.readouterr().err
