"""Writing a file so that a crash leaves the old version or the new one, never half.

Manifests, locks, environment markers and exported datasets are all read back as proof
of something (a package is complete, an env is built), so a truncated one would lie.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path | str, data: bytes | str, *, partial_suffix: str | None = None) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over.

    The temp file has a unique name, or with ``partial_suffix`` the fixed name
    ``<name><partial_suffix>``: a USB export names its unfinished files that way so that a
    later run recognises and removes what an interrupted one left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    if partial_suffix:
        tmp = str(path.with_name(path.name + partial_suffix))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
