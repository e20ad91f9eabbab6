"""Real wheels for tests: one download per session, and hash-pinned locks over them.

The download is the connected side's job (it needs PyPI); everything a test does with the
wheels afterwards is offline. ``corpus/samples/requirements.txt`` names what the sample,
and most test repos, need: pytest, setuptools and wheel.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import parse_wheel_filename

from appliance.pipenv import clean_pip_env

REQUIREMENTS = Path(__file__).resolve().parents[1] / "corpus" / "samples" / "requirements.txt"


def download_wheels(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
         "--dest", str(dest), "-r", str(REQUIREMENTS)],
        env=clean_pip_env(), check=True, timeout=600,
    )
    return dest


def make_lock(wheels: Path | Iterable[Path], dest: Path, *, extra: str = "") -> Path:
    """A hash-pinned lock of the given wheels (a folder: all of its wheels), as pip-compile writes."""
    files = sorted(wheels.glob("*.whl")) if isinstance(wheels, Path) else sorted(wheels)
    lines = []
    for whl in files:
        name, version, _, _ = parse_wheel_filename(whl.name)
        digest = hashlib.sha256(whl.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}\n")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(lines) + extra)
    return dest


def locked_era(home, name: str, wheels: Path, first_commit: str, *, key: str = "a" * 64):
    """What ``cra corpus add`` leaves for a repo whose tests need only ``wheels``: the package's
    wheelhouse (hard links) and one era locked over it, as an ``EraRecord`` to register."""
    import os

    from appliance.records import EraRecord

    wheelhouse = home.wheelhouse(name)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for whl in wheels.glob("*.whl"):
        if not (wheelhouse / whl.name).exists():
            os.link(whl, wheelhouse / whl.name)
    lock = make_lock(wheels, wheelhouse / "locks" / "good.txt")
    return EraRecord(key=key, requirements=["pytest"], build_requires=["setuptools>=64"], first_commit=first_commit,
                     lock_path="locks/good.txt", lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest(),
                     status="locked")
