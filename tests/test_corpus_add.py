"""`cra corpus add` and `cra demo` end to end, through the CLI, on the shipped sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import funnel, get_commits, get_eras
from appliance.demo import SAMPLE_BUNDLE
from appliance.packaging.manifest import read_manifest

pytestmark = [pytest.mark.network, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_wheels(wheel_cache: Path) -> Path:
    """The sample's wheels (what scripts/bootstrap.sh downloads)."""
    return wheel_cache


def test_add_sample_from_local_wheels(home: Home, sample_wheels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["corpus", "add", str(SAMPLE_BUNDLE), "--name", "inkwell", "--no-index",
               "--find-links", str(sample_wheels), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = json.loads(out.out)
    assert result["name"] == "inkwell" and result["commits"] == 53
    assert 0 < result["kept"] < result["commits"]
    # The sample has two dependency eras (a test extra, then a PEP 735 group); both lock.
    assert [e["status"] for e in result["eras"]] == ["locked", "locked"]

    with Database(home.db_path) as db:
        kept = get_commits(db, "inkwell", status="kept")
        eras = get_eras(db, "inkwell")
        data = funnel(db, "inkwell")
    assert len(kept) == result["kept"] and all(c.era_key for c in kept)
    assert sum(len(e.commits) for e in eras) == len(kept)
    # PR merges are units of work, with the PR title as the instruction.
    merges = [c for c in kept if c.is_merge]
    assert merges and all(not c.title.startswith("Merge pull request") for c in merges)
    # Every rejection is a row with a reason: the funnel adds up.
    assert data["kept"] + sum(s["rejected"] for s in data["stages"]) == data["commits"]

    manifest = read_manifest(home.manifest_path("inkwell"))
    assert {w["file"] for w in manifest["wheelhouse"]} == {p.name for p in home.wheelhouse("inkwell").glob("*.whl")}
    for era in manifest["eras"]:
        assert (home.wheelhouse("inkwell") / era["lock"]).exists()
    assert (home.repo_dir("inkwell") / ".git").is_dir()


def test_add_fails_cleanly_on_a_missing_source(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["corpus", "add", str(home.root / "nope"), "--no-index"])
    err = capsys.readouterr().err
    assert rc == 1 and "nope" in err and "Traceback" not in err
    assert not home.repo_dir("nope").exists()
    assert not home.tmp.exists() or not any(home.tmp.iterdir())  # no staging left behind


def test_demo_runs_offline_end_to_end(home: Home, sample_wheels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["demo", "--wheels", str(sample_wheels), "--package-only"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "inkwell: commit funnel" in out.out
    airgapped = Home(home.root / "demo" / "airgapped")
    with Database(airgapped.db_path) as db:
        data = funnel(db, "inkwell")
    assert data["commits"] == 53 and data["kept"] > 0
    assert (airgapped.repo_dir("inkwell") / ".git").is_dir()
    # It says which home it used and what to run next, naming the air-gapped sub-home:
    # the command a user copies works (before, 'no repo package named inkwell').
    assert f"home:            {home.root}" in out.out and f"air-gapped home: {airgapped.root}" in out.out
    commands = [line.strip() for line in out.out.splitlines() if line.startswith("  cra --home ")]
    assert commands[0] == f"cra --home {airgapped.root} corpus funnel inkwell"
    assert any(c.endswith("harness validate inkwell") for c in commands)
    import shlex

    assert main(shlex.split(commands[0])[1:] + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["commits"] == 53


def test_sample_flows_from_commits_to_tasks_plans_and_triples(
    home: Home, sample_wheels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole offline side through the CLI: validate -> tasks -> retrieval runs -> triples."""
    assert main(["corpus", "add", str(SAMPLE_BUNDLE), "--name", "inkwell", "--no-index",
                 "--find-links", str(sample_wheels)]) == 0
    capsys.readouterr()
    assert main(["harness", "validate", "inkwell", "--limit", "6", "--workers", "2", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert sum(counts.values()) == 6 and counts["valid"] >= 4, counts

    assert main(["harness", "tasks", "inkwell", "--status", "valid", "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    assert len(tasks) == counts["valid"] and all(t["fail_to_pass"] for t in tasks)
    assert main(["harness", "tasks", "inkwell", "--commit", tasks[0]["sha"][:10], "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["gold_patch"] and whole["test_patch"]

    # Resumable: a rerun with the same limit takes the next commits, never the done ones.
    assert main(["harness", "validate", "inkwell", "--commit", tasks[0]["sha"], "--json"]) == 0
    assert sum(json.loads(capsys.readouterr().out).values()) == 0

    assert main(["harness", "run", "inkwell", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "retrieval" and summary["runs"] == counts["valid"]
    assert main(["harness", "show", "1"]) == 0
    assert "attempt 1" in capsys.readouterr().out

    assert main(["triples", "build", "inkwell", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    # scope, precision, plan and execute per task, less what was skipped with a reason
    assert built["triples"] == 4 * counts["valid"] - sum(built["skipped"].values()) >= 3 * counts["valid"]
    assert main(["harness", "score", "inkwell", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["by_source"]["gold"]["mean_score"] == 1.0
    # Tasks that change existing code get a retrieval plan, scored against the commit.
    assert 0 <= scored["by_source"]["retrieval"]["mean_score"] <= 1
    out = home.root / "export"
    assert main(["triples", "export", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "scope.sft.jsonl").read_text().splitlines()]
    assert len(rows) == counts["valid"] and all(r["messages"][-1]["role"] == "assistant" for r in rows)
