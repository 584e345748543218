"""What a model folder may hold and point to: checked before anything in it is read.

A saved folder comes from someone else (the Hub, a colleague, a download). Loading it must not run code, read
outside it, block, or read without bound. :func:`check_folder_is_safe` refuses pickle-based files anywhere in the
folder (symlinked folders are refused: a walk would not see inside them); :func:`resolve_inside` turns a path
written in a config into a path that stays inside the folder; :func:`read_bounded` reads a regular file of
bounded size (FIFOs and devices are refused before opening).

Symlinked *files* are allowed (the Hugging Face cache links a snapshot's files to its blobs), checked by both
their name and their target's.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> resolve_inside(folder, "meta/humour.skops", "meta-estimator file").name
    'humour.skops'
    >>> resolve_inside(folder, "../elsewhere.skops", "meta-estimator file")
    Traceback (most recent call last):
    hf_memotion.folder_safety.UnsafeModelFolderError: meta-estimator file '../elsewhere.skops' leaves the folder ...
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "MAX_SMALL_FILE_BYTES",
    "PICKLE_SUFFIXES",
    "UnsafeModelFolderError",
    "check_folder_is_safe",
    "check_regular_file",
    "read_bounded",
    "resolve_inside",
]

#: File types that deserialise with pickle: a model folder holding any of them is refused.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".bin", ".pt", ".pth", ".ckpt")
#: Largest config or meta-estimator file read from a folder (a random forest of 200 trees is a few MB).
MAX_SMALL_FILE_BYTES = 256 * 1024 * 1024


class UnsafeModelFolderError(ValueError):
    """A model folder holds or points to something that loading must not touch; nothing was loaded."""


def check_folder_is_safe(folder: str | os.PathLike) -> None:
    """Refuse a folder with pickle-based files or symlinked folders (listing them), before anything is loaded.

    Raises:
        UnsafeModelFolderError: Naming every offending entry.
    """
    folder = Path(folder)
    unsafe, linked_dirs = [], []
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs:
            if (Path(root) / name).is_symlink():
                linked_dirs.append(str((Path(root) / name).relative_to(folder)))
        for name in files:
            path = Path(root) / name
            names = [name]
            if path.is_symlink():
                names.append(Path(os.path.realpath(path)).name)
            if any(Path(n).suffix.lower() in PICKLE_SUFFIXES for n in names):
                unsafe.append(str(path.relative_to(folder)))
    if linked_dirs:
        raise UnsafeModelFolderError(
            f"{folder} holds symlinked folders {sorted(linked_dirs)}: their content cannot be checked; copy the "
            "files into the folder instead"
        )
    if unsafe:
        raise UnsafeModelFolderError(
            f"{folder} holds pickle-based files that could run code when loaded: {sorted(unsafe)}; hf-memotion only "
            "loads safetensors weights and skops estimators. Remove them (or convert the weights to safetensors)."
        )


def resolve_inside(folder: str | os.PathLike, relative: str | os.PathLike, what: str) -> Path:
    """``folder / relative``, refused unless it stays inside ``folder`` (no absolute path, ``..`` or symlink out).

    Raises:
        UnsafeModelFolderError: Naming ``what`` and the path.
    """
    text = os.fspath(relative)
    if not text or Path(text).is_absolute() or ".." in Path(text).parts or text.startswith("~"):
        raise UnsafeModelFolderError(
            f"{what} {text!r} leaves the folder {folder}: paths in a saved config must be relative and stay inside"
        )
    candidate = Path(folder)
    for part in Path(text).parts:
        candidate = candidate / part
        if candidate.is_symlink() and candidate.is_dir():
            raise UnsafeModelFolderError(f"{what} {text!r} goes through a symlinked folder of {folder}: refused")
    return candidate


def check_regular_file(path: str | os.PathLike, what: str, max_bytes: int = MAX_SMALL_FILE_BYTES) -> int:
    """Refuse anything but a regular file of at most ``max_bytes`` (FIFOs, devices, sockets never opened).

    Returns:
        The file's size in bytes.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} is missing") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeModelFolderError(f"{what} {path} is not a regular file (a FIFO, device or folder): refused")
    if info.st_size > max_bytes:
        raise UnsafeModelFolderError(
            f"{what} {path} is {info.st_size} bytes, more than the {max_bytes} this file may have: refused"
        )
    return info.st_size


def read_bounded(path: str | os.PathLike, what: str, max_bytes: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """The bytes of a regular file checked by :func:`check_regular_file` (read no further than its checked size)."""
    size = check_regular_file(path, what, max_bytes)
    with open(path, "rb") as handle:
        data = handle.read(size + 1)
    if len(data) > size:
        raise UnsafeModelFolderError(f"{what} {path} grew while it was read: refused")
    return data
