"""What a model folder may hold and point to: checked before anything in it is read.

A saved folder comes from someone else (the Hub, a colleague, a download). Loading it must not run code, read
outside it, block, or read without bound. :func:`check_folder_is_safe` refuses pickle-based files anywhere in the
folder (symlinked folders are refused: a walk would not see inside them); :func:`resolve_inside` turns a path
written in a config into a path that stays inside the folder; :func:`read_bounded` reads a regular file of
bounded size (FIFOs and devices are refused before opening).

Symlinked *files* are allowed only where they stay inside: the folder itself, or, for a Hugging Face cache
snapshot (``models--org--name/snapshots/<revision>/``), that repository's ``blobs/`` (the cache links a snapshot's
files there). A link anywhere else (``README.md -> /proc/self/environ``) is refused, as are files that are not
regular files or that are larger than a config or card can be. :func:`read_inside` is the one checked read of a
file named inside a folder (cards, configs, estimator files).

Examples:
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
    "MAX_CONFIG_BYTES",
    "MAX_SMALL_FILE_BYTES",
    "MODEL_CONFIG_FILES",
    "PICKLE_SUFFIXES",
    "REFUSED_CONFIG_KEYS",
    "REFUSED_MODEL_TYPES",
    "UnsafeModelFolderError",
    "allowed_model_types",
    "check_data_name",
    "check_folder_is_safe",
    "check_link_stays_inside",
    "check_model_configs",
    "check_regular_file",
    "read_bounded",
    "read_inside",
    "resolve_inside",
]

#: File types that deserialise with pickle: a model folder holding any of them is refused.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".bin", ".pt", ".pth", ".ckpt")
#: Largest config or meta-estimator file read from a folder (a random forest of 200 trees is a few MB).
MAX_SMALL_FILE_BYTES = 256 * 1024 * 1024
#: Largest ``config.json`` read from a folder (an ensemble's, calibration maps included, is well under 1 MB).
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: Files of a model folder that may be larger than :data:`MAX_SMALL_FILE_BYTES` (weights).
LARGE_FILE_SUFFIXES = (".safetensors", ".onnx")


class UnsafeModelFolderError(ValueError):
    """A model folder holds or points to something that loading must not touch; nothing was loaded."""


def _allowed_roots(folder: Path) -> list[Path]:
    """Where a file link of ``folder`` may point: the folder, and the ``blobs/`` of a Hub cache snapshot holding it."""
    roots = [Path(os.path.realpath(folder))]
    for ancestor in (folder, *folder.parents):
        if ancestor.parent.name == "snapshots" and ancestor.parent.parent.name.startswith(("models--", "datasets--")):
            roots.append(Path(os.path.realpath(ancestor.parent.parent / "blobs")))
            break
    return roots


def check_link_stays_inside(folder: str | os.PathLike, path: str | os.PathLike, what: str) -> None:
    """Refuse ``path`` when it is a symlink whose target leaves ``folder`` (or its Hub cache's ``blobs/``).

    Raises:
        UnsafeModelFolderError: Naming ``what``, the link and its target.
    """
    path = Path(path)
    if not path.is_symlink():
        return
    target = Path(os.path.realpath(path))
    if not any(target.is_relative_to(root) for root in _allowed_roots(Path(folder))):
        raise UnsafeModelFolderError(
            f"{what} {path} is a symlink to {target}, outside the folder: refused (copy the file into the folder)"
        )


def check_folder_is_safe(folder: str | os.PathLike, *, recursive: bool = True, refuse_pickles: bool = True) -> None:
    """Refuse a folder with pickle files, symlinked folders, links out, or odd files, before anything is loaded.

    Odd files are those that are not regular files (FIFOs, devices, ``/proc``) or that are larger than a config
    can be (:data:`MAX_SMALL_FILE_BYTES`; weights excepted).

    Args:
        folder: The folder.
        recursive: Check its subfolders too (an ensemble); ``False`` checks its own files only (one model).
        refuse_pickles: Refuse pickle-based files (an ensemble never holds one); ``False`` for one model's folder,
            which transformers loads without unpickling (safetensors first, ``.bin`` weights with
            ``weights_only=True``) and where ``Trainer.save_model`` leaves ``training_args.bin``.

    Raises:
        UnsafeModelFolderError: Naming every offending entry.
    """
    folder = Path(folder)
    unsafe, linked_dirs, bad = [], [], []
    for root, dirs, files in os.walk(folder, followlinks=False):
        if not recursive:
            dirs[:] = []
        for name in dirs:
            if (Path(root) / name).is_symlink():
                linked_dirs.append(str((Path(root) / name).relative_to(folder)))
        for name in files:
            path = Path(root) / name
            relative = str(path.relative_to(folder))
            names = [name]
            if path.is_symlink():
                names.append(Path(os.path.realpath(path)).name)
            if refuse_pickles and any(Path(n).suffix.lower() in PICKLE_SUFFIXES for n in names):
                unsafe.append(relative)
                continue
            try:
                check_link_stays_inside(folder, path, "file")
                limit = None if Path(names[-1]).suffix.lower() in LARGE_FILE_SUFFIXES else MAX_SMALL_FILE_BYTES
                check_regular_file(path, "file", limit)
            except (UnsafeModelFolderError, FileNotFoundError) as err:
                bad.append(str(err))
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
    if bad:
        raise UnsafeModelFolderError(f"{folder} holds files that loading must not read: {'; '.join(sorted(bad))}")


def _leaves(text: str) -> bool:
    """Whether a relative name could leave its folder here: empty, absolute, with ``..``, or under ``~``."""
    return not text or Path(text).is_absolute() or ".." in Path(text).parts or text.startswith("~")


def resolve_inside(folder: str | os.PathLike, relative: str | os.PathLike, what: str) -> Path:
    """``folder / relative``, refused unless it stays inside ``folder`` (no absolute path, ``..`` or symlink out).

    Raises:
        UnsafeModelFolderError: Naming ``what`` and the path.
    """
    text = os.fspath(relative)
    if _leaves(text):
        raise UnsafeModelFolderError(
            f"{what} {text!r} leaves the folder {folder}: paths in a saved config must be relative and stay inside"
        )
    candidate = Path(folder)
    for part in Path(text).parts:
        candidate = candidate / part
        if candidate.is_symlink() and candidate.is_dir():
            raise UnsafeModelFolderError(f"{what} {text!r} goes through a symlinked folder of {folder}: refused")
    return candidate


def check_regular_file(path: str | os.PathLike, what: str, max_bytes: int | None = MAX_SMALL_FILE_BYTES) -> int:
    """Refuse anything but a regular file of at most ``max_bytes`` (FIFOs, devices, sockets never opened).

    ``/proc`` and ``/sys`` files (which report a size of 0 and can yield anything) are refused too.

    Returns:
        The file's size in bytes.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} is missing") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeModelFolderError(f"{what} {path} is not a regular file (a FIFO, device or folder): refused")
    if Path(os.path.realpath(path)).parts[1:2] in (("proc",), ("sys",)):
        raise UnsafeModelFolderError(f"{what} {path} is a file of the running system (/proc, /sys): refused")
    if max_bytes is not None and info.st_size > max_bytes:
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


def read_inside(
    folder: str | os.PathLike, relative: str | os.PathLike, what: str, max_bytes: int = MAX_SMALL_FILE_BYTES
) -> bytes:
    """The one checked read of a file named inside a folder: it stays inside, is a regular file, is bounded.

    Raises:
        UnsafeModelFolderError: The name leaves the folder, the file links outside, is no regular file or too large.
        FileNotFoundError: The file is missing.

    Examples:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "README.md").write_text("# card")
        >>> read_inside(folder, "README.md", "model card")
        b'# card'
    """
    path = resolve_inside(folder, relative, what)
    check_link_stays_inside(folder, path, what)
    return read_bounded(path, what, max_bytes)


def check_data_name(name: object, where: str, folder: str | os.PathLike | None = None) -> str:
    """A file name read from a data row (a CSV cell, a JSON field), refused unless it is relative and stays inside.

    Absolute paths, ``..`` parts, ``~`` and drive letters or backslashes are refused, naming ``where`` (the file and
    line, or the post): a data file must never make the library read a file outside its folder.

    Returns:
        The name, stripped.

    Raises:
        UnsafeModelFolderError: Naming ``where``, the name and the fix.

    Examples:
        >>> check_data_name("img/01235.png", "train.jsonl line 1")
        'img/01235.png'
        >>> check_data_name("/etc/passwd", "train.jsonl line 2")
        Traceback (most recent call last):
        hf_memotion.folder_safety.UnsafeModelFolderError: train.jsonl line 2: image '/etc/passwd' leaves the data ...
    """
    text = str(name).strip() if name is not None else ""
    if _leaves(text) or "\\" in text or (len(text) > 1 and text[1] == ":"):  # also a Windows path elsewhere
        inside = f" {folder}" if folder is not None else ""
        raise UnsafeModelFolderError(
            f"{where}: image {text!r} leaves the data folder{inside}; image names must be relative to the data "
            "file's folder and stay inside it"
        )
    return text


#: The JSON files of a model folder that transformers' loaders parse (the model's, the tokenizer's, the processor's).
MODEL_CONFIG_FILES = (
    "config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "processor_config.json",
    "generation_config.json",
)
#: Keys a model folder's configs may not hold, at any depth: they make loading download or read weights (timm's
#: ``pretrained_cfg``, ``checkpoint_path``, a backbone's pretrained weights) or run the folder's code.
REFUSED_CONFIG_KEYS = frozenset(
    {
        "checkpoint_path",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "cache_dir",
        "auto_map",
        "custom_pipelines",
        "trust_remote_code",
    }
)
#: Keys refused when true: a backbone built from another library's (downloaded) weights.
REFUSED_TRUE_KEYS = frozenset({"use_pretrained_backbone", "use_timm_backbone"})
#: Nested model types refused in a model folder's config: transformers builds them with ``timm.create_model`` from the
#: config's ``architecture`` and ``model_args``, which can name a folder (``local-dir:``) or a checkpoint to read.
REFUSED_MODEL_TYPES = frozenset({"timm_wrapper", "timm_backbone"})
#: String prefixes that make timm or the Hub libraries read a location: refused as any config value.
LOCATION_PREFIXES = ("local-dir:", "hf-hub:", "hf_hub:", "file:")
_INFORMATIONAL_KEYS = frozenset({"_name_or_path", "name_or_path"})  # where a model was saved from: never read


def _config_values(value: object, where: str):
    """``(key path, key, value)`` for every entry of a parsed JSON config, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}"
            yield path, str(key), item
            yield from _config_values(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _config_values(item, f"{where}[{index}]")


def _config_problem(key: str, value: object, model_types: frozenset[str]) -> str | None:
    """Why one config entry is refused, or ``None``."""
    if key in REFUSED_CONFIG_KEYS:
        return "makes loading read weights, download or run the folder's code"
    if key in REFUSED_TRUE_KEYS and value:
        return "builds a backbone from downloaded weights"
    if key == "model_type" and isinstance(value, str) and (value in REFUSED_MODEL_TYPES or value not in model_types):
        return "is not a model type hf-memotion defines or allows"
    if isinstance(value, str):
        if value.lower().startswith(LOCATION_PREFIXES):
            return "names a location to read"
        is_location_key = key.endswith(("_file", "_files", "_path", "_dir")) or key in ("file", "path")
        if is_location_key and key not in _INFORMATIONAL_KEYS and value:
            return "names a file to read (loading reads only the folder's own files)"
    return None


def allowed_model_types() -> frozenset[str]:
    """Model types a folder's config may name: transformers' and those registered with it, less the refused ones.

    This library registers its own types on import; :data:`REFUSED_MODEL_TYPES` are left out.
    """
    from transformers import CONFIG_MAPPING

    return frozenset(CONFIG_MAPPING.keys()) - REFUSED_MODEL_TYPES


def check_model_configs(
    folder: str | os.PathLike, *, model_types: frozenset[str] | set[str] | tuple[str, ...] = (), what: str = "model"
) -> None:
    """Refuse a model folder whose configs could make loading read outside it, download, or build another network.

    Checked before transformers, timm or a tokenizer parses them.

    Each of :data:`MODEL_CONFIG_FILES` present is read through :func:`read_inside` (no link out, at most
    :data:`MAX_CONFIG_BYTES`) and walked: no key of :data:`REFUSED_CONFIG_KEYS` at any depth (a timm wrapper's
    ``model_args.checkpoint_path`` included), no ``use_pretrained_backbone``/``use_timm_backbone``, no value naming a
    location (``local-dir:``, ``hf-hub:``, ``file:``; a ``*_file``/``*_path``/``*_dir`` key with a string), and every
    ``model_type`` one of :func:`allowed_model_types` (nested ones: a joint model's towers); ``config.json``'s own
    ``model_type`` must be one of ``model_types`` when they are given (a family's).

    Args:
        folder: The model folder (local, or a Hub snapshot already downloaded).
        model_types: The top-level model types this folder may be (empty: any allowed type).
        what: What the folder is, for the error (``"base model 'vision'"``).

    Raises:
        UnsafeModelFolderError: One line naming the file, the key and why.

    Examples:
        >>> import json, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text(json.dumps({"model_type": "timm_wrapper", "architecture":
        ...     "resnet18", "model_args": {"checkpoint_path": "/home/me/weights.pth"}}))
        >>> check_model_configs(folder, model_types={"memotion_vision"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        hf_memotion.folder_safety.UnsafeModelFolderError: model ...config.json: model_type 'timm_wrapper' is not one ...
        >>> check_model_configs(folder)  # any type: still refused
        Traceback (most recent call last):
        hf_memotion.folder_safety.UnsafeModelFolderError: model ...: model_type = 'timm_wrapper' is not a model type ...
    """
    import json

    folder = Path(folder)
    allowed = allowed_model_types()
    wanted = frozenset(model_types)
    for name in MODEL_CONFIG_FILES:
        if not (folder / name).exists() and not (folder / name).is_symlink():
            continue
        text = read_inside(folder, name, f"{what} {name}", MAX_CONFIG_BYTES)
        try:
            parsed = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise UnsafeModelFolderError(f"{what} {folder / name} is not a JSON file ({err}): refused") from None
        if name == "config.json":
            top = parsed.get("model_type") if isinstance(parsed, dict) else None
            if wanted and top not in wanted:
                raise UnsafeModelFolderError(
                    f"{what} {folder / name}: model_type {top!r} is not one this member may be ({sorted(wanted)}); "
                    "save the model with hf-memotion"
                )
        for path, key, value in _config_values(parsed, ""):
            problem = _config_problem(key, value, allowed | wanted)
            if problem is not None:
                shown = value if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
                raise UnsafeModelFolderError(
                    f"{what} {folder / name}: {path.lstrip('.')} = {shown!r} {problem}: refused (a saved "
                    "folder never does; save the model with hf-memotion)"
                )
