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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "FolderNotOursError",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_run_folder",
    "entries_of_marker",
    "staged_folder",
]


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


class FolderNotOursError(FileExistsError):
    """A writer's target folder holds files this library did not write: nothing is written, nothing removed."""


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _listing(names: list[str]) -> str:
    """The first five names, and how many more."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


@contextlib.contextmanager
def staged_folder(
    path: str | os.PathLike, *, owned: Callable[[Path], Iterable[str] | None], what: str
) -> Iterator[Path]:
    """A temporary folder beside ``path`` to write into; on success its entries take their places in ``path``.

    Nothing a user put in ``path`` is removed or overwritten:

    - a new or empty ``path`` becomes the staging folder in one move;
    - a folder this library wrote before (``owned(path)`` names the entries it wrote: a saved ensemble's config
      lists them, a demo dataset's marker does) has those entries swapped for the new ones, and keeps every other
      file (a note, another model beside it);
    - any other non-empty ``path`` is refused before anything is written (:class:`FolderNotOursError`, naming it).

    On an exception the staging folder is removed and ``path`` is left as it was.

    Args:
        path: The folder to write.
        owned: ``folder -> names of its top-level entries this library wrote``, or ``None`` when the folder is not
            one of its own kind.
        what: What is written, for the error (``"an ONNX export"``).

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out"
        >>> with staged_folder(target, owned=lambda folder: None, what="a folder") as staging:
        ...     _ = (staging / "a.txt").write_text("done")
        >>> (target / "a.txt").read_text()
        'done'
        >>> _ = (target / "notes.md").write_text("mine")
        >>> with staged_folder(target, owned=lambda folder: None, what="a folder") as staging:  # doctest: +ELLIPSIS
        ...     pass
        Traceback (most recent call last):
        hf_memotion.io_utils.FolderNotOursError: ... holds files hf-memotion did not write (a.txt, notes.md)...
    """
    import shutil

    target = Path(path)
    present = _entries(target)
    if target.exists() and not target.is_dir():
        raise FolderNotOursError(f"{target} is a file, not a folder: {what} needs a new or empty folder")
    mine = set(owned(target) or ()) if present else set()
    if present and not mine:
        raise FolderNotOursError(
            f"{target} holds files hf-memotion did not write ({_listing(present)}): {what} is never written over them; "
            "choose a new or empty folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    moved: list[str] = []
    trash: Path | None = None
    try:
        yield staging
        if not present:
            if target.is_dir():
                target.rmdir()  # empty
            os.replace(staging, target)
            return
        new = _entries(staging)
        clash = sorted(set(new) & set(present) - mine)
        if clash:
            raise FolderNotOursError(
                f"{target} holds {', '.join(clash)}, which hf-memotion did not write and {what} would replace; "
                "move it away or choose another folder"
            )
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        for name in sorted(mine & set(present)):
            os.replace(target / name, trash / name)
            moved.append(name)
        for name in new:
            os.replace(staging / name, target / name)
        shutil.rmtree(trash, ignore_errors=True)
        staging.rmdir()
    except BaseException:
        if trash is not None:  # put back what was moved aside
            for name in moved:
                if not (target / name).exists():
                    os.replace(trash / name, target / name)
            shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_run_folder(path: str | os.PathLike, signature: Iterable[str], what: str) -> None:
    """Refuse to run into a folder that holds files and is not a folder of this kind, before anything is written.

    A run writes its own files by name (and replaces them when run again, or resumes from them); a folder holding
    other files but none of the run's ``signature`` entries (a folder of the user's, another tool's output) is
    never written into.

    Raises:
        FolderNotOursError: Naming the folder, what it holds and the fix.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> check_run_folder(folder / "new", ["metrics.json"], "a training run")  # new: fine
        >>> _ = (folder / "thesis.tex").write_text("mine")
        >>> check_run_folder(folder, ["metrics.json"], "a training run")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        hf_memotion.io_utils.FolderNotOursError: ... holds files and is not a training run's folder (thesis.tex)...
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FolderNotOursError(f"{folder} is a file: {what} needs a folder to write in")
    present = _entries(folder)
    if present and not any((folder / name).exists() for name in signature):
        raise FolderNotOursError(
            f"{folder} holds files and is not {what}'s folder ({_listing(present)}): nothing is written there; "
            "choose a new or empty folder"
        )


def entries_of_marker(marker: str) -> Callable[[Path], list[str] | None]:
    """An ``owned`` for :func:`staged_folder`: the entries a JSON marker file lists (``{"entries": [...]}``).

    The marker itself is one of them; a folder without it, or with one that lists nothing, is not one of ours.
    """
    import json

    def owned(folder: Path) -> list[str] | None:
        path = folder / marker
        if path.is_symlink() or not path.is_file():
            return None
        try:
            entries = json.loads(path.read_text(encoding="utf-8")[:1_000_000]).get("entries")
        except (ValueError, AttributeError, UnicodeDecodeError):
            return None
        if not isinstance(entries, list) or not all(isinstance(e, str) and "/" not in e for e in entries):
            return None
        return [marker, *entries]

    return owned
