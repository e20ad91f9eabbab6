"""Benchmark ``cra corpus add``: locking with uv against locking with pip-compile.

    .venv/bin/python benchmarks/packaging.py /tmp/realrepos/attrs [--modes uv,pip-compile]
        [--keep DIR] [--json]

Packages REPO once per mode, in the same run, each in a fresh CRA_HOME with a cold
download cache (so neither mode inherits the other's downloads):

* ``uv``: the default. ``uv pip compile --generate-hashes``, eras locked concurrently
  (``[packaging] lock_workers``), each as of its own date, one download cache;
* ``pip-compile``: the fallback where uv is not installed, otherwise the same;
* ``pip-compile-serial`` (on request): pip-compile one era after the other, what
  ``cra corpus add`` did before (the baseline the issue measured: 14 min 23 s for the
  42 eras of structlog).

For each it prints the wall-clock time of the whole add and of its steps, where the
steps that run concurrently (lock, fill, verify) count the time during which at least
one era was in them, and the share of the add spent locking; then the ratio of every
mode's time to uv's. The repo should have at least 1,500 commits. It needs the network
(PyPI): this is the connected side's job.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This script is named like the "packaging" library: its own folder must not shadow it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from appliance.config import Home, Settings
from appliance.db.core import Database
from appliance.packaging.corpus import add_repo

MODES = {
    "uv": {"lock_tool": "uv"},
    "pip-compile": {"lock_tool": "pip-compile"},
    "pip-compile-serial": {"lock_tool": "pip-compile", "lock_workers": 1},
}


def run_mode(mode: str, repo: str, root: Path, branches: list[str]) -> dict[str, Any]:
    home = Home(root / mode)
    home.root.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    for key, value in MODES[mode].items():
        setattr(settings.packaging, key, value)
    started = time.monotonic()
    with Database(home.db_path) as db:
        result = add_repo(home, db, settings, repo, name="bench", branches=branches)
    wall = time.monotonic() - started
    t = result.timings
    return {
        "mode": mode,
        "home": str(home.root),
        "commits": result.commits,
        "kept": result.kept,
        "eras": len(result.eras),
        "locked": sum(e.status == "locked" for e in result.eras),
        "unresolvable": len(result.unresolvable),
        "as_of": sum(bool(e.locked_as_of) for e in result.eras),
        "wheels": result.wheels,
        "total_s": round(wall, 1),
        "steps_s": {k: round(v, 1) for k, v in t.items() if k != "total"},
        "lock_share": round(t.get("lock", 0.0) / wall, 3) if wall else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="a git URL or a local clone")
    parser.add_argument("--modes", default="uv,pip-compile",
                        help=f"comma-separated, from {', '.join(MODES)} (default: uv,pip-compile)")
    parser.add_argument("--branch", action="append", default=[], help="also walk this branch")
    parser.add_argument("--keep", type=Path, help="keep each mode's CRA_HOME under this folder")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: use {', '.join(MODES)}")
    repo = str(Path(args.repo).resolve()) if Path(args.repo).exists() else args.repo

    with tempfile.TemporaryDirectory(prefix="cra-bench-packaging-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        rows = [run_mode(mode, repo, root, args.branch) for mode in modes]
    base = next((r for r in rows if r["mode"] == "uv"), rows[0])
    for r in rows:
        r["over_" + base["mode"]] = round(r["total_s"] / base["total_s"], 2) if base["total_s"] else None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"repo {repo}: {rows[0]['commits']} commits, {rows[0]['kept']} kept, {rows[0]['eras']} eras")
    for r in rows:
        steps = ", ".join(f"{k} {v}s" for k, v in r["steps_s"].items())
        print(f"{r['mode']:<19} corpus add {r['total_s']:>7.1f}s  locking {100 * r['lock_share']:.0f}% "
              f"({r['steps_s'].get('lock', 0)}s)  eras locked {r['locked']}/{r['eras']} "
              f"({r['as_of']} as of their date)  x{r['over_' + base['mode']]} of {base['mode']}")
        print(f"{'':<19} steps: {steps}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
