"""``cra demo``: the main job on the bundled sample, with no network.

It plays both sides of the air gap on one machine: package the sample (connected side,
but from a local wheel folder with no index), export it to a USB folder, import that into
a fresh home (the air-gapped side) and return the funnel the air-gapped DB now holds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import appliance
from appliance.config import Home, Settings
from appliance.db.core import Database
from appliance.errors import BadInput

PROJECT_ROOT = Path(appliance.__file__).resolve().parents[1]
SAMPLE_BUNDLE = PROJECT_ROOT / "corpus" / "samples" / "inkwell.bundle"
DEFAULT_WHEELS = PROJECT_ROOT / ".cache" / "wheels"


@dataclass
class DemoResult:
    connected_home: Path
    usb: Path
    airgapped_home: Path
    funnel: dict[str, Any]


def run_demo(
    home: Home,
    *,
    wheels: Path | None = None,
    bundle: Path = SAMPLE_BUNDLE,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoResult:
    from appliance.packaging.bundle import export_package, import_package
    from appliance.packaging.corpus import add_repo
    from appliance.db.corpus import funnel

    wheels = wheels or DEFAULT_WHEELS
    if not bundle.exists():
        raise BadInput("the sample bundle is missing", path=bundle, hint="run cra from a checkout of the project")
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
        add_repo(connected, db, settings, str(bundle), name="inkwell", progress=progress)
        export_package(connected, "inkwell", usb)
    with Database(airgapped.db_path) as db:
        import_package(airgapped, usb, db)
        data = funnel(db, "inkwell")
    return DemoResult(connected.root, usb, airgapped.root, data)
