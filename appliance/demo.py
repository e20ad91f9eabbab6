"""``cra demo``: the main job on the bundled sample, with no network.

It plays both sides of the air gap on one machine: package the sample (connected side,
but from a local wheel folder with no index), export it to a USB folder, import that into
a fresh home (the air-gapped side) and return the funnel the air-gapped DB now holds, with
the commands that carry on from there (they name the air-gapped home: it is a sub-folder
of the home the demo was given, not that home itself).

The sample ships inside the ``appliance`` package (``appliance/data/inkwell.bundle``, a
link to ``corpus/samples/inkwell.bundle`` in a checkout), so the demo runs from an
installed wheel too; only the sample's dependency wheels come from outside (``--wheels``,
or ``.cache/wheels`` that ``scripts/bootstrap.sh`` fills).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import appliance
from appliance.config import Home, Settings
from appliance.db.core import Database
from appliance.errors import BadInput

SAMPLE = "inkwell"
PROJECT_ROOT = Path(appliance.__file__).resolve().parents[1]  # a checkout's root (or site-packages)
SAMPLE_BUNDLE = Path(str(resources.files("appliance").joinpath("data", f"{SAMPLE}.bundle")))
WHEELS_FOLDER = Path(".cache") / "wheels"


@dataclass
class DemoResult:
    home: Path
    connected_home: Path
    usb: Path
    airgapped_home: Path
    funnel: dict[str, Any]
    next_commands: list[str] = field(default_factory=list)


def next_commands(airgapped: Path, name: str = SAMPLE) -> list[str]:
    """What to run next on the demo's air-gapped home (``--home`` named: it is not CRA_HOME)."""
    home = f"cra --home {shlex.quote(str(airgapped))}"
    return [
        f"{home} corpus funnel {name}",
        f"{home} harness validate {name}",
        f"{home} harness tasks {name}",
        f"{home} harness run {name}",
        f"{home} triples build {name}",
    ]


def default_wheels(home: Home) -> Path:
    """``$CRA_HOME/.cache/wheels``, else the checkout's (``scripts/bootstrap.sh`` fills it)."""
    for root in (home.root, PROJECT_ROOT):
        if (root / WHEELS_FOLDER).is_dir():
            return root / WHEELS_FOLDER
    return home.root / WHEELS_FOLDER


def run_demo(
    home: Home,
    *,
    wheels: Path | None = None,
    bundle: Path = SAMPLE_BUNDLE,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoResult:
    from appliance.db.corpus import funnel
    from appliance.packaging.bundle import export_package, import_package
    from appliance.packaging.corpus import add_repo

    wheels = wheels or default_wheels(home)
    if not bundle.is_file():
        raise BadInput("the sample bundle is missing", path=bundle,
                       hint="reinstall cra: its wheel ships the sample (appliance/data/inkwell.bundle)")
    if not wheels.is_dir() or not any(wheels.glob("*.whl")):
        raise BadInput(
            "no wheels for the sample's dependencies", path=wheels,
            hint="run scripts/bootstrap.sh once (it downloads them), or pass --wheels DIR",
        )
    base = home.root / "demo"
    if base.exists():
        shutil.rmtree(base)
    connected, usb, airgapped = Home(base / "connected"), base / "usb", Home(base / "airgapped")

    settings = Settings()
    settings.packaging.find_links = [str(wheels.resolve())]
    settings.packaging.no_index = True
    with Database(connected.db_path) as db:
        add_repo(connected, db, settings, str(bundle), name=SAMPLE, progress=progress)
        export_package(connected, SAMPLE, usb)
    with Database(airgapped.db_path) as db:
        import_package(airgapped, usb, db)
        data = funnel(db, SAMPLE)
    return DemoResult(home.root, connected.root, usb, airgapped.root, data, next_commands(airgapped.root))
