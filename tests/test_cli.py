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
    out = subprocess.run([str(exe), "corpus", "funnel", "nope"], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_supplement_without_a_model_says_what_to_pass(home, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["harness", "validate", "lib", "--supplement"]) == 2
    assert "--supplement needs a model" in capsys.readouterr().err


def _argv_for(path: tuple[str, ...], folder: Path) -> list[str]:
    """``cra PATH`` with a value that parses for every required argument and option."""
    cmd: click.Command = cli
    for part in path:
        cmd = cmd.commands[part]  # type: ignore[attr-defined]
    argv = list(path)
    for param in cmd.params:
        if not param.required:
            continue
        value = "1"
        if isinstance(param.type, click.Choice):  # a required choice (datasets import --format)
            value = str(param.type.choices[0])
        elif isinstance(param.type, click.Path):
            value = str(folder if param.type.dir_okay else folder / "file.jsonl")
        if isinstance(param, click.Option):
            argv += [param.opts[0], value]
        else:
            argv.append(value)
    return argv


LEAVES = [p for p in ALL_COMMANDS if not isinstance(
    __import__("functools").reduce(lambda c, part: c.commands[part], p, cli), click.Group)]


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_command_checks_the_settings_file(path, home, tmp_path: Path, capsys) -> None:
    home.config_path.write_text("[mining]\nmin_files = 2.5\n")
    folder = tmp_path / "arg"
    folder.mkdir()
    (folder / "file.jsonl").write_text("{}\n")
    assert main(_argv_for(path, folder)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cra.toml" in err and "min_files must be an integer" in err
    # --help still works with a broken file: it reads nothing.
    assert main([*path, "--help"]) == 0


@pytest.mark.parametrize("argv", [
    ["harness", "tasks", "lib", "--status", "bogus"],
    ["harness", "runs", "lib", "--status", "bogus"],
    ["triples", "build", "lib", "--status", "bogus"],
])
def test_status_values_are_checked_everywhere(argv, home, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'bogus' is not one of" in err and "--status" in err


def test_a_bad_before_date_names_before(home, tmp_path: Path, capsys) -> None:
    assert main(["triples", "export", "--out", str(tmp_path / "out"), "--before", "last week"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--before 'last week' is not a date" in err and "--since" not in err


def test_an_unexpected_exception_is_reported_as_a_cra_bug_with_its_log(home, monkeypatch, capsys) -> None:
    import appliance.db.corpus

    def broken(db):
        raise ZeroDivisionError("the list went wrong")

    monkeypatch.setattr(appliance.db.corpus, "list_repos", broken)
    assert main(["corpus", "list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: this is a cra bug") and "the list went wrong" in last
    [log] = home.logs.glob("crash-*.log")
    assert str(log) in last.replace("\n", "")
    text = log.read_text()
    assert text.startswith("cra corpus list\n") and "ZeroDivisionError: the list went wrong" in text


def test_progress_lines_when_stderr_is_not_a_terminal() -> None:
    import io

    from rich.console import Console

    from appliance.cli.base import ProgressLines

    out = io.StringIO()
    lines = ProgressLines(Console(file=out, width=200), interval=3600)
    for done in range(101):
        lines("validate", done, 100)
    lines("validate", 100, 100)  # repeated: nothing new to say
    got = out.getvalue().splitlines()
    assert [g.split(",")[0] for g in got] == ["validate: 0/100 (0%)", "validate: 100/100 (100%)"]
    out.truncate(0), out.seek(0)
    every = ProgressLines(Console(file=out, width=200), interval=0)
    for done in range(4):
        every("import", done, 3)
    assert len(out.getvalue().splitlines()) == 4


def test_the_code_passes_ruff_and_the_test_command_runs_it() -> None:
    root = Path(__file__).resolve().parents[1]
    assert ".venv/bin/python -m ruff check ." in (root / "scripts" / "test.sh").read_text()
    pytest.importorskip("ruff", reason="the dev extra (ruff) is not installed")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=root, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stdout[-3000:]
