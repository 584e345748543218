"""Hub repositories as checked local folders: only model files fetched, within a size, checked before parsing.

:func:`download_model_folder` is how every loader of this library reads a Hub id (an ensemble, a pinned base model,
one model's ``from_pretrained``): the Hub's listing is read first (a repository above :data:`MAX_DOWNLOAD_BYTES` is
refused before anything is fetched), only :data:`MODEL_FILE_PATTERNS` are downloaded, and the snapshot is checked
as a folder (:func:`~hf_memotion.folder_safety.check_folder_is_safe`) before anything in it is parsed.

Examples:
    >>> is_hub_id("memotion-org/text-base")
    True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hf_memotion.folder_safety import UnsafeModelFolderError, check_folder_is_safe
from hf_memotion.hub.connectivity import offline_if_unreachable

__all__ = ["HUB_OPTIONS", "MAX_DOWNLOAD_BYTES", "MODEL_FILE_PATTERNS", "download_model_folder", "is_hub_id"]

#: The files an ensemble (and each base model in it) is made of: a download fetches these and nothing else.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.skops", "*.onnx", "*.txt", "*.model", "README.md"]
#: ``from_pretrained`` options a Hub download takes (passed on to ``snapshot_download``).
HUB_OPTIONS = ("token", "cache_dir", "force_download", "local_files_only")
#: Largest download of one ensemble or pinned base model (checked against the Hub's listing before fetching).
MAX_DOWNLOAD_BYTES = 20 * 1024**3
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(text: str) -> bool:
    """``namespace/name`` as the Hub spells it (no absolute path, ``..``, ``~`` or third part).

    Examples:
        >>> is_hub_id("memotion-org/text-base"), is_hub_id("/abs/dir"), is_hub_id("../up/dir")
        (True, False, False)
    """
    return bool(_HUB_ID.match(text)) and ".." not in text


def download_model_folder(repo_id: str, revision: str | None, hub_options: Mapping[str, Any] | None = None) -> Path:
    """Fetch the model files (:data:`MODEL_FILE_PATTERNS`) of a Hub repository, at most :data:`MAX_DOWNLOAD_BYTES`.

    The size is checked from the Hub's listing before anything is fetched (offline, the cache is used as it is);
    the snapshot is then checked by :func:`check_folder_is_safe` before anything in it is parsed.

    Raises:
        UnsafeModelFolderError: ``repo_id`` is not a Hub id, the download is too large, or the snapshot is unsafe.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import DryRunError

    if not is_hub_id(str(repo_id)):
        raise UnsafeModelFolderError(
            f"{repo_id!r} is neither a local folder nor a Hub id (namespace/name): nothing is downloaded for it"
        )
    options = {"allow_patterns": MODEL_FILE_PATTERNS, **dict(hub_options or {})}
    # no network: one line and the cache at once, not minutes of retries (nothing checked for local_files_only)
    offline_if_unreachable(local_files_only=bool(options.get("local_files_only")))
    try:
        listing = snapshot_download(str(repo_id), revision=revision, dry_run=True, **options)
    except DryRunError:  # offline or unreachable: the cache is used as it is (checked below)
        listing = []
    planned = sum(item.file_size or 0 for item in listing if item.will_download)
    if planned > MAX_DOWNLOAD_BYTES:
        raise UnsafeModelFolderError(
            f"{repo_id} would download {planned / 1024**3:.1f} GB, more than the {MAX_DOWNLOAD_BYTES / 1024**3:.0f} GB "
            "an ensemble or base model may take: download it yourself if you trust it, and pass the folder"
        )
    folder = Path(snapshot_download(str(repo_id), revision=revision, **options))
    check_folder_is_safe(folder)
    return folder
