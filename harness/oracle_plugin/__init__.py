"""cra's pytest plugin (``cra_oracle.py``), shipped as a folder put on the sandboxed
interpreter's ``PYTHONPATH``: the project's environment never has cra installed."""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
PLUGIN = "cra_oracle"  # the module pytest loads with -p
FD_ENV = "CRA_ORACLE_FD"  # must match cra_oracle.ENV
