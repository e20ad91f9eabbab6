"""``cra doctor``: what is installed, which optional parts work, where state lives.

Checks are cheap on purpose (package metadata, ``shutil.which``), never an import of torch
or vllm, so doctor answers in well under a second even on a box without a GPU.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata

from appliance import __version__
from appliance.config import Home, Settings, describe_settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    extra: str = ""  # the extra that provides it, for the install hint

    @property
    def hint(self) -> str:
        if self.ok or not self.extra:
            return ""
        return f"pip install 'cra[{self.extra}]'"


OPTIONAL = (
    # (distribution, import name, extra, what it is for)
    ("uv", None, "fast", "fast offline installs"),
    ("llama-cpp-python", "llama_cpp", "llama", "in-process GGUF inference"),
    ("gguf", "gguf", "llama", "GGUF conversion of models and adapters"),
    ("torch", "torch", "train", "LoRA training"),
    ("transformers", "transformers", "train", "LoRA training"),
    ("peft", "peft", "train", "LoRA adapters"),
    ("trl", "trl", "train", "SFT / DPO trainers"),
    ("datasets", "datasets", "train", "dataset loading"),
    ("vllm", "vllm", "gpu", "serving with per-request LoRA (CUDA)"),
    ("unsloth", "unsloth", "gpu", "fast QLoRA training (CUDA)"),
    ("bitsandbytes", "bitsandbytes", "gpu", "4-bit quantisation (CUDA)"),
    ("deepspeed", "deepspeed", "gpu", "training on several GPUs (ZeRO-2)"),
)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def optional_checks() -> list[Check]:
    checks = []
    for dist, module, extra, purpose in OPTIONAL:
        version = _version(dist)
        if dist == "uv":
            ok = version is not None or shutil.which("uv") is not None
        else:
            ok = version is not None and (module is None or importlib.util.find_spec(module) is not None)
        detail = f"{version} ({purpose})" if ok else f"missing ({purpose})"
        checks.append(Check(dist, ok, detail, extra))
    return checks


def tool_checks() -> list[Check]:
    checks = []
    git = shutil.which("git")
    version = ""
    if git:
        version = subprocess.run([git, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    checks.append(Check("git", bool(git), version or "missing: install git"))
    from harness.sandbox import sandbox_info

    info = sandbox_info()
    detail = {
        "bwrap": "bwrap: namespaces, only the bind list visible, no network, rlimits",
        "unshare": "unshare: no network, rlimits; no filesystem isolation (model code needs "
                   "--allow-weak-sandbox)",
        "rlimits": "rlimits only: no network or filesystem isolation (model code needs "
                   "--allow-weak-sandbox)",
    }[info.level]
    detail += f"; process limit: {info.process_limit}"
    for warning in info.warnings:
        detail += f"\nWARNING: {warning}"
    checks.append(Check("sandbox", info.level == "bwrap" and not info.warnings, detail))
    return checks


def sandbox_view(home: Home) -> dict[str, object]:
    """What sandboxed code sees: the bind list of a test run with cra's own interpreter
    (``harness.sandbox.bind_plan``) and, for the places it must never see (the user's home,
    CRA_HOME, ``/etc/shadow``, ``/root``), whether they are hidden."""
    from pathlib import Path

    from harness.oracle_plugin import PLUGIN_DIR
    from harness.sandbox import bind_plan, isolation_level

    level = isolation_level()
    plan = bind_plan(readonly=[PLUGIN_DIR], pythons=[Path(sys.executable)])
    visible = [*plan.system, *plan.readonly]
    secrets = {"home": Path.home(), "CRA_HOME": home.root, "/etc/shadow": Path("/etc/shadow"),
               "/root": Path("/root")}
    etc = Path("/etc")

    def shown(path: Path) -> bool:
        if level != "bwrap":
            return True  # no filesystem isolation: the whole host is readable
        if path == etc or etc in path.parents:
            return (plan.etc / path.relative_to(etc)).exists()
        return any(path == v or v in path.parents for v in visible)

    copied = ", ".join(sorted(p.name for p in plan.etc.iterdir()))
    return {
        "level": level,
        "symlinks": [f"{link} -> {target}" for target, link in plan.symlinks] if level == "bwrap" else [],
        "read_only": ([str(p) for p in plan.system] + [f"/etc: {copied}"]
                      + [str(p) for p in plan.readonly]) if level == "bwrap" else ["/ (everything)"],
        "read_write": ["the checkout, the JUnit folder, a fresh HOME and TMPDIR per run"],
        "hidden": {name: not shown(path) for name, path in secrets.items()},
    }


def report(home: Home, settings: Settings) -> dict[str, object]:
    from appliance.db.core import Database

    db_info: dict[str, object] = {"path": str(home.db_path), "exists": home.db_path.exists()}
    if home.db_path.exists():
        with Database(home.db_path, migrate=False) as db:
            db_info["schema_version"] = db.schema_version
    return {
        "cra": __version__,
        "python": f"{sys.version.split()[0]} ({sys.executable})",
        "platform": platform.platform(),
        "home": str(home.root),
        "config": str(home.config_path) + ("" if home.config_path.exists() else " (absent: defaults)"),
        "db": db_info,
        "tools": [asdict(c) | {"hint": c.hint} for c in tool_checks()],
        "sandbox": sandbox_view(home),
        "optional": [asdict(c) | {"hint": c.hint} for c in optional_checks()],
        "settings": [{"key": k, "value": v, "help": h} for k, v, h in describe_settings(settings)],
    }
