"""Publish a saved model folder (ensemble, base model, VisE) to the Hub, keeping its model card.

``transformers``' ``push_to_hub`` writes its own ``README.md`` over the folder's card; this module
uploads the folder as it is, in one commit, with :class:`huggingface_hub.HfApi`. What is uploaded is
decided here, once (:func:`upload_plan`), so a dry run lists exactly the files a real run sends:
every file of the folder except hidden files and folders (``.demo_config``, unfinished ``.*.tmp``
files of atomic writes, caches), ``__pycache__``, and files that look like credentials or keys
(:data:`SECRET_PATTERNS`: ``id_rsa``, ``*.pem``, ``*.key``, ``credentials*``, ``token``, ``*_token``, ``.env``, ...;
never a tokenizer's files), which are
left out with a warning unless named in ``include``. A folder holding pickle-based files or symlinks is refused
(a link's target could be any file of the machine), as is a plan above ``max_total_bytes`` (10 GB) or with a
file above ``max_file_bytes`` (5 GB) unless ``allow_large=True``: the dry run shows the same plan.

Examples:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}"); _ = (folder / ".cache").mkdir()
    >>> [f.path_in_repo for f in upload_plan(folder)]
    ['config.json']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

from hf_memotion.folder_safety import PICKLE_SUFFIXES
from hf_memotion.hub.connectivity import redact_credentials

try:  # the HTTP client huggingface_hub uses: httpx2 from huggingface_hub 2, httpx before
    from httpx2 import HTTPError as _TransportError
except ImportError:  # pragma: no cover - huggingface_hub 1.x
    from httpx import HTTPError as _TransportError

__all__ = [
    "MODEL_ID_PLACEHOLDER",
    "SECRET_PATTERNS",
    "HubPublishError",
    "PlannedFile",
    "PublishResult",
    "PushSpec",
    "push_folder",
    "upload_plan",
]

#: What a card's usage snippet loads until the folder is published (publishing puts the repo id there).
MODEL_ID_PLACEHOLDER = "path/to/this/folder"
#: File names (lower-cased, matched with ``fnmatch``) that look like credentials or private keys: never planned
#: unless listed in ``include``.
#: Credential names only: a tokenizer's files (``tokenizer.json``, ``special_tokens_map.json``, ``added_tokens.json``)
#: never match, since a text model is useless without them.
SECRET_PATTERNS = (
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.kdbx",
    "credentials*",
    "*credentials.json",
    "*secret*",
    "token",
    "token.txt",
    "token.json",
    "*.token",
    "*_token",
    "*-token",
    "*_token.txt",
    "*_token.json",
    "hf_token*",
    "stored_tokens",
    ".env",
    "*.env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    "*.gpg",
    "*.asc",
)
#: Above these sizes a plan needs ``allow_large=True`` (the Hub's own limits are near them; a slip is costly).
MAX_FILE_BYTES = 5 * 1024**3
MAX_TOTAL_BYTES = 10 * 1024**3

logger = logging.getLogger(__name__)


class HubPublishError(RuntimeError):
    """Publishing failed for a reason the user can fix; the message says which and how."""


@dataclass(frozen=True)
class PlannedFile:
    """One file of an upload: where it is on disk and where it goes in the repository."""

    path_in_repo: str
    local_path: Path
    size: int


@dataclass
class PublishResult:
    """What :func:`push_folder` did (or, in a dry run, would do)."""

    repo_id: str
    files: list[PlannedFile]
    dry_run: bool
    url: str | None = None
    left_out: list[str] | None = None


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def _looks_secret(relative: Path) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(part.lower(), pattern) for part in relative.parts for pattern in SECRET_PATTERNS)


def upload_plan(
    folder: str | os.PathLike,
    *,
    include: tuple[str, ...] | list[str] = (),
    allow_large: bool = False,
    plan_left_out: list[str] | None = None,
) -> list[PlannedFile]:
    """The files of ``folder`` that publishing uploads, sorted by their path in the repository.

    Args:
        folder: The saved folder.
        include: Paths (relative to the folder) to upload although they look like credentials.
        allow_large: Accept a file above 5 GB or a plan above 10 GB.
        plan_left_out: When given, filled with the files left out because they look like credentials.

    Raises:
        HubPublishError: ``folder`` is missing or empty, holds pickle-based files or symlinks, or is too large.
    """
    plan_left_out = plan_left_out if plan_left_out is not None else []
    root = Path(folder)
    if not root.is_dir():
        raise HubPublishError(
            f"{root} is not a folder: pass the folder a training script saved (e.g. outputs/demo/ensemble)"
        )
    entries = [p for p in root.rglob("*") if not _hidden(p.relative_to(root))]
    links = sorted(p.relative_to(root).as_posix() for p in entries if p.is_symlink())
    if links:
        raise HubPublishError(
            f"{root} holds symlinks {links}: their targets could be any file of this machine; copy the files in "
            "(or remove the links) and publish again"
        )
    files = sorted((p for p in entries if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    unsafe = [p.relative_to(root).as_posix() for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
    if unsafe:
        raise HubPublishError(
            f"{root} holds pickle-based files {unsafe}: they could run code on whoever loads them; remove them "
            "(hf-memotion saves weights as safetensors and estimators as skops) and publish again"
        )
    wanted = {Path(i).as_posix() for i in include}
    secret = [p for p in files if _looks_secret(p.relative_to(root)) and p.relative_to(root).as_posix() not in wanted]
    if secret:
        logger.warning(
            "left out of the upload (they look like credentials or keys; name them with --include PATH, or "
            "include=[...] from Python, to send them): %s",
            [p.relative_to(root).as_posix() for p in secret],
        )
    files = [p for p in files if p not in secret]
    if not files:
        raise HubPublishError(f"{root} holds no files to publish")
    plan = [PlannedFile(p.relative_to(root).as_posix(), p, p.stat().st_size) for p in files]
    plan_left_out[:] = sorted(p.relative_to(root).as_posix() for p in secret)
    big = [f"{f.path_in_repo} ({f.size / 1024**3:.1f} GB)" for f in plan if f.size > MAX_FILE_BYTES]
    total = sum(f.size for f in plan)
    if (big or total > MAX_TOTAL_BYTES) and not allow_large:
        raise HubPublishError(
            f"{root} would upload {total / 1024**3:.1f} GB{' with ' + ', '.join(big) if big else ''}: check the "
            "plan (--dry-run) and pass allow_large=True (--allow-large) to send it"
        )
    return plan


@dataclass(frozen=True)
class PushSpec:
    """The ``push_to_hub:`` section of a training config: publish what the run saved when it ends.

    ``repo_id`` may hold ``{name}`` (the model's name), required when a run saves several models.

    Examples:
        >>> PushSpec.from_config({"repo_id": "me/memotion-{name}", "private": True}).repo_for("text")
        'me/memotion-text'
    """

    repo_id: str
    private: bool = False
    revision: str | None = None
    commit_message: str | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> PushSpec | None:
        """Settings from a config section (``None`` or ``{}``: no publishing)."""
        if not section:
            return None
        known = {"repo_id", "private", "revision", "commit_message"}
        unknown = sorted(set(section) - known)
        if unknown or "repo_id" not in section:
            raise ValueError(f"push_to_hub takes {sorted(known)} (repo_id required); got {sorted(section)}")
        return cls(
            repo_id=str(section["repo_id"]),
            private=bool(section.get("private", False)),
            revision=section.get("revision"),
            commit_message=section.get("commit_message"),
        )

    def repo_for(self, name: str) -> str:
        """The repository for the model called ``name``."""
        return self.repo_id.replace("{name}", name)

    def push(self, folder: str | os.PathLike, name: str) -> PublishResult:
        """Publish ``folder`` (the model called ``name``) with these settings."""
        options = {"private": self.private, "revision": self.revision, "commit_message": self.commit_message}
        return push_folder(folder, self.repo_for(name), **options)


def _explain(err: Exception, repo_id: str, endpoint: str) -> str:
    """A plain sentence for a Hub failure: what happened and what to do."""
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: unset it (or set HF_HUB_OFFLINE=0) to publish"
    if isinstance(err, RepositoryNotFoundError):
        return f"{repo_id} was not found on {endpoint}, or your token cannot see it: check the repo id and the token"
    if isinstance(err, HfHubHTTPError):
        status = getattr(err.response, "status_code", None)
        detail = str(err).splitlines()[0]
        if status == 401:
            return f"the Hub rejected the token (401): run `hf auth login` again or set a valid HF_TOKEN ({detail})"
        if status == 403:
            return (
                f"the token may not write to {repo_id} (403): use a token with write access to that namespace, "
                f"or publish under your own namespace ({detail})"
            )
        if status == 409:
            return (
                f"{repo_id} conflicts with an existing repository (409): it may exist as another repo type, or "
                f"the revision may be behind; pick another repo id or revision ({detail})"
            )
        return f"the Hub answered {status}: {detail}"
    return f"cannot reach the Hub at {endpoint} ({type(err).__name__}: {err}); check the network or HF_ENDPOINT"


def _operation(file: PlannedFile, repo_id: str) -> CommitOperationAdd:
    """The upload of one file; the card's usage snippet gets the repository id instead of a local path."""
    if file.path_in_repo == "README.md":
        text = file.local_path.read_text(encoding="utf-8")
        if MODEL_ID_PLACEHOLDER in text:
            return CommitOperationAdd("README.md", text.replace(MODEL_ID_PLACEHOLDER, repo_id).encode("utf-8"))
    return CommitOperationAdd(path_in_repo=file.path_in_repo, path_or_fileobj=str(file.local_path))


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    repo_type: str = "model",
    dry_run: bool = False,
    include: tuple[str, ...] | list[str] = (),
    allow_large: bool = False,
) -> PublishResult:
    """Upload a saved model folder to the Hub as one commit, keeping its ``README.md`` model card.

    The repository is created when it does not exist (``private`` applies then); ``revision``
    names a branch, created from the default branch when missing. In the uploaded ``README.md``, the
    card's usage snippet names ``repo_id`` instead of the local placeholder path.

    Args:
        folder: A folder written by a training script (ensemble, base model or VisE).
        repo_id: ``namespace/name`` on the Hub.
        private: Create the repository as private.
        revision: Branch to commit to (default: the main branch).
        commit_message: The commit's message.
        token: A Hub token (default: ``HF_TOKEN`` or the one saved by ``hf auth login``).
        repo_type: ``"model"`` or ``"space"`` (a Gradio Space folder).
        dry_run: Only plan: list the files, touch nothing.
        include: Files to upload although they look like credentials (see :data:`SECRET_PATTERNS`).
        allow_large: Accept a file above 5 GB or an upload above 10 GB.

    Returns:
        The files (planned or uploaded), and the commit URL after a real upload.

    Raises:
        HubPublishError: No token, no network, a refused token, a conflicting repository, a bad folder.

    Examples:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "README.md").write_text("# my model")
        >>> [f.path_in_repo for f in push_folder(folder, "me/model", dry_run=True).files]
        ['README.md']
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubPublishError(f"repo id {repo_id!r} must look like 'namespace/name'")
    left_out: list[str] = []
    files = upload_plan(folder, include=include, allow_large=allow_large, plan_left_out=left_out)
    if not (Path(folder) / "README.md").is_file() and repo_type == "model":
        logger.warning("%s has no README.md: the repository will have no model card", folder)
    result = PublishResult(repo_id=repo_id, files=files, dry_run=dry_run, left_out=left_out)
    if dry_run:
        return result
    token = token or get_token()
    if not token:
        raise HubPublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then publish again")
    endpoint = constants.ENDPOINT
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        operations = [_operation(f, repo_id) for f in files]
        commit = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {Path(folder).name} with hf-memotion",
            revision=revision,
            repo_type=repo_type,
        )
    except (HfHubHTTPError, OfflineModeIsEnabled, _TransportError, OSError) as err:
        raise HubPublishError(redact_credentials(_explain(err, repo_id, endpoint))) from None
    result.url = getattr(commit, "commit_url", None)
    return result
