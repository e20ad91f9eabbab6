"""``write_atomic``: whole files or none, with the mode a plain ``open()`` would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.atomic import current_umask, write_atomic


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
@pytest.mark.parametrize("partial", [None, ".cra-partial"])
def test_files_get_the_mode_the_umask_allows(tmp_path: Path, umask, mask: int, mode: int,
                                             partial: str | None) -> None:
    umask(mask)
    assert current_umask() == mask
    target = tmp_path / "out" / "manifest.json"
    write_atomic(target, "{}\n", partial_suffix=partial)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    # Replacing a file written under another umask gives the new file the current mode.
    umask(0o077 if mask != 0o077 else 0o022)
    write_atomic(target, b"[]\n", partial_suffix=partial)
    assert target.read_bytes() == b"[]\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~current_umask()
    assert sorted(p.name for p in target.parent.iterdir()) == ["manifest.json"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "lock.txt"
    write_atomic(target, "old\n")

    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # type: ignore[arg-type]  (fails after the temp file exists)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["lock.txt"]
