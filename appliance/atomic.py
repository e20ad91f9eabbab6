"""Writing a file so that a crash leaves the old version or the new one, never half.

Manifests, locks, environment markers and exported datasets are all read back as proof
of something (a package is complete, an env is built), so a truncated one would lie.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``,
    Linux >= 4.7); elsewhere set and restored under a lock (``os.umask`` has no getter)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_atomic(path: Path | str, data: bytes | str, *, partial_suffix: str | None = None) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over.

    The temp file has a unique name, or with ``partial_suffix`` the fixed name
    ``<name><partial_suffix>``: a USB export names its unfinished files that way so that a
    later run recognises and removes what an interrupted one left.

    The file gets the mode ``open()`` would give a new file (0666 less the umask): exports,
    manifests and locks are meant to be read by others (``mkstemp`` alone makes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    if partial_suffix:
        tmp = str(path.with_name(path.name + partial_suffix))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
