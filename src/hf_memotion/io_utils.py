r"""Atomic file writes: a reader never sees a half-written file, a crash never leaves one.

Examples:
    >>> import tempfile, pathlib
    >>> from hf_memotion.io_utils import atomic_write_text
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "answer.txt"
    >>> atomic_write_text(path, "1_1101_2301\\n")
    >>> path.read_text()
    '1_1101_2301\\n'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "staged_folder"]


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The mode a new file gets from ``open()`` (0644 under the usual umask 022); ``mkstemp`` would leave 0600.
_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: Final file path. Its parent folder is created if needed.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: Text encoding (ignored in binary mode).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, _FILE_MODE)  # as open() would: readable by whoever may read the folder
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``path`` to write into; on success it replaces ``path`` (a folder) in one move.

    On an exception the temporary folder is removed and ``path`` is left as it was.

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out"
        >>> with staged_folder(target) as staging:
        ...     _ = (staging / "a.txt").write_text("done")
        >>> (target / "a.txt").read_text()
        'done'
    """
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
