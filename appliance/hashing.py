"""sha256 of files, streamed: wheels and bundles can be hundreds of MB."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(folder: Path | str, *, hidden: bool = True) -> dict[str, str]:
    """{relative POSIX path: sha256} of every file under ``folder`` (symlinks refused).

    ``hidden=False`` leaves out paths with a part starting with "." (a hub client's
    ``.cache/`` inside a model folder is not the model).
    """
    root = Path(folder)
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not hidden and any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link; a hashed tree holds plain files only")
        if path.is_file():
            out[rel.as_posix()] = sha256_file(path)
    return out


def tree_digest(files: dict[str, str]) -> str:
    """One sha256 for a ``sha256_tree`` result: over "path\\0sha256\\n" lines in path order."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()
