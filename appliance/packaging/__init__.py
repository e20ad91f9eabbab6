"""The connected side: repo packages (clone, mine, lock eras, wheelhouse, manifest) and USB bundles.

Above the harness (``corpus`` mines with ``harness.mining``), below the CLI. Nothing in the
core (config, db, llm) or the harness imports from here.
"""
