"""cra: the offline appliance.

Layers, bottom up: ``appliance.config`` / ``appliance.db`` / ``appliance.errors`` /
``appliance.status`` / ``appliance.llm`` (core), then ``harness`` (mining, environments,
pipeline), then the subpackages ``appliance.packaging`` (repo packages, USB bundles),
``appliance.training``, ``appliance.adapters``, ``appliance.evaluation`` and
``appliance.serving``, then ``appliance.cli``. Nothing imports upward, so the harness never
knows about the terminal.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("cra")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
