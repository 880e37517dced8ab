"""Writing files so that a reader never sees half of one.

Everything thacam writes for the user to keep (model files, profiles, frames, videos) goes to a
temporary name in the same folder and is renamed into place: an interrupted write (Ctrl-C, a full
disk, a crash) leaves the old file or none, never a truncated one. The temporary file gets the
permissions the final file should have, so the rename does not leave a 0600 file behind.

Standard library only; must not import any other thacam module.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["temp_beside", "atomic_write_bytes", "atomic_write_text"]


def temp_beside(path: Path, suffix: str = ".part") -> Path:
    """A new empty temporary file next to ``path`` (mkstemp makes 0600) with the permissions the
    final file should have: those of the file it replaces, else the usual umask default."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, mode)
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then rename: never half a file."""
    path = Path(path)
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for text, encoded as UTF-8 (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))
