"""Writing files so that a reader never sees half of one.

Everything thacam writes for the user to keep (model files, profiles, frames, videos) goes to a
temporary name in the same folder and is renamed into place: an interrupted write (Ctrl-C, a full
disk, a crash) leaves the old file or none, never a truncated one. The temporary file gets the
permissions the final file should have, so the rename does not leave a 0600 file behind.

Standard library only; must not import any other thacam module.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["temp_beside", "atomic_open", "atomic_write_bytes", "atomic_write_text"]


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


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", suffix: str = ".part") -> Iterator[IO]:
    """A file to write ``path`` through: a temporary name beside it, renamed into place when the
    ``with`` block ends normally, removed on any error or interrupt (the old file stays).

    An OSError names ``path`` itself: the temporary name means nothing to the user.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        tmp = temp_beside(path, suffix)
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then rename: never half a file."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for text, encoded as UTF-8 (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))
