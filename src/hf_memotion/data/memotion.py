"""Load Memotion 1.0 (SemEval-2020 Task 8) as a ``datasets.DatasetDict``, and write submissions.

Three sources give the same features (see :func:`memotion_features`):

* the training release folder ``memotion_dataset_7k/`` (``labels.csv`` + ``images/``): split ``train``;
* the test release folder (``2000_testdata.csv`` + ``Meme_groundTruth.csv`` or
  ``Meme_groundTruth .csv`` + ``2000_data/``): split ``test``, labels decoded from the
  ``A_hsom_hsom`` strings (no label columns when there is no ground-truth file);
* anything ``datasets.load_dataset`` reads (a Hub id, a parquet/csv/jsonl file or folder) whose
  columns follow either release: an ``image`` column, the text columns, and labels as the five
  release string columns, a ``Labels`` string, or the nine problem columns.

A folder holding both releases one level down (e.g. the demo data) gives ``train`` and ``test``.

Examples:
    >>> from hf_memotion.data import load_memotion, make_demo_data
    >>> root = make_demo_data("/tmp/memotion_demo_doc", n_train=40, n_test=10)
    >>> ds = load_memotion(root)
    >>> sorted(ds), ds["train"].features["sentiment"].names
    (['test', 'train'], ['negative', 'neutral', 'positive'])
"""

from __future__ import annotations

import io
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import datasets
import huggingface_hub
import pandas as pd

from hf_memotion.data.images import ImageDecodeError, load_rgb_image
from hf_memotion.data.ocr import check_ocr_available, read_meme_text
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.tasks import (
    PROBLEM_NAMES,
    PROBLEMS,
    RELEASE_COLUMNS,
    decode_submission,
    encode_submission,
    to_label_columns,
)

__all__ = [
    "MemotionFormatError",
    "describe_data_source",
    "load_memotion",
    "memotion_features",
    "read_answer_file",
    "write_answer_file",
]

logger = logging.getLogger(__name__)

TRAIN_CSV = "labels.csv"
TRAIN_IMAGES = "images"
TEST_CSV = "2000_testdata.csv"
TEST_IMAGES = "2000_data"
TEST_TRUTH_NAMES = ("Meme_groundTruth.csv", "Meme_groundTruth .csv")
DATA_FILE_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json", ".arrow": "arrow"}

# Column aliases, lower-cased: the training release, the test release, our own output schema.
_IMAGE_NAME = ("image_name",)
_TEXT_CORRECTED = ("text_corrected", "corrected_text")
_TEXT_OCR = ("text_ocr", "ocr_extracted_text")
_TEXT_OURS = ("text_raw", "text")
_LABEL_STRING = ("labels",)

OnError = Literal["raise", "skip"]


class MemotionFormatError(ValueError):
    """The data does not follow the Memotion release format; the message names file, row and value."""


def memotion_features(with_labels: bool = True) -> datasets.Features:
    """The features every loaded split has.

    ``image_name`` (string), ``image`` (``datasets.Image``), ``text`` (lower-cased, as the paper
    normalises it), ``text_raw`` (as in the release, ``text_corrected`` falling back to
    ``text_ocr``), and one ``ClassLabel`` per problem of :data:`hf_memotion.tasks.PROBLEMS`.
    """
    features = {
        "image_name": datasets.Value("string"),
        "image": datasets.Image(),
        "text": datasets.Value("string"),
        "text_raw": datasets.Value("string"),
    }
    if with_labels:
        features.update({p.name: datasets.ClassLabel(names=list(p.labels)) for p in PROBLEMS})
    return datasets.Features(features)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def load_memotion(
    path: str | os.PathLike,
    *,
    test_path: str | os.PathLike | None = None,
    on_error: OnError = "raise",
    verify_images: bool = True,
    revision: str | None = None,
    num_proc: int | None = None,
    encoding: str = "utf-8",
    read_missing_text: bool = False,
) -> datasets.DatasetDict:
    """Load Memotion data from a release folder, a data file or folder, or a Hub dataset id.

    Args:
        path: A ``memotion_dataset_7k`` folder, a test-release folder, a folder holding either or
            both one level down, a parquet/csv/jsonl file or folder, or a Hub dataset id.
        test_path: An extra test-release folder, loaded as split ``test``.
        on_error: ``"raise"`` (default) fails on the first bad row set with a message naming every
            bad row (file, row, column, value); ``"skip"`` drops bad rows and warns how many were
            skipped and why.
        verify_images: Decode every image once while loading, so an unreadable image fails here
            and not in the middle of training. ``False`` only checks that image files exist.
        revision: Git revision of a Hub dataset.
        num_proc: Processes for the per-row checks (image decoding); ``None`` runs in-process.
        encoding: Encoding of the release CSVs. A byte that does not decode is an error naming the file and
            line (a file is never silently re-read in another encoding); pass e.g. ``"cp1252"`` for a file
            saved by a Windows spreadsheet.
        read_missing_text: Read the text of memes whose ``text_corrected`` and ``text_ocr`` are both blank off
            their images (OCR, as ``pipeline("meme-emotion")`` does: :func:`hf_memotion.data.ocr.read_meme_text`;
            needs the ``ocr`` extra and Tesseract). Off by default: such memes keep an empty text.

    Returns:
        A ``DatasetDict`` whose splits have :func:`memotion_features`.

    Raises:
        MemotionFormatError: Missing files or columns, unknown label strings, missing or unreadable
            images, image names that leave the image folder, image names listed twice (unless
            ``on_error="skip"``), bytes that are not ``encoding``; every message names the file it is about.
        FileNotFoundError: ``path`` is neither a local folder/file nor a loadable Hub dataset.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if read_missing_text:
        check_ocr_available()  # before any row is read: the message says what to install
    options = {
        "on_error": on_error,
        "verify_images": verify_images,
        "num_proc": num_proc,
        "encoding": encoding,
        "read_missing_text": bool(read_missing_text),
    }
    splits = dict(_load_any(Path(path) if _is_local(path) else str(path), revision, options))
    if test_path is not None:
        if "test" in splits:
            raise MemotionFormatError(f"{path} already holds a test split; do not pass test_path={test_path} as well")
        splits["test"] = _load_test_release(Path(test_path), options)
    name, description = describe_data_source(path, revision)
    for split in splits.values():  # provenance travels with the data (model cards read it)
        split.info.dataset_name, split.info.description = name, description
    return datasets.DatasetDict(splits)


def describe_data_source(path: str | os.PathLike, revision: str | None = None) -> tuple[str, str]:
    """A dataset id and a one-line description of where Memotion data came from.

    ``load_memotion`` stores both in every split's ``info`` (``dataset_name``, ``description``), so
    what was trained on what can be told later (model cards). Demo data made by
    :func:`~hf_memotion.data.make_demo_data` is recognised by its ``.demo_config`` marker.

    Examples:
        >>> describe_data_source("someone/memotion", revision="abc123")
        ('someone/memotion', 'Hugging Face Hub dataset someone/memotion at revision abc123')
    """
    if not _is_local(path):
        at = f" at revision {revision}" if revision else ""
        return str(path), f"Hugging Face Hub dataset {path}{at}"
    local = Path(path).expanduser()
    folder = local.parent if local.is_file() else local
    for candidate in (folder, folder.parent):
        if (candidate / ".demo_config").is_file():
            return "hf-memotion-demo", (
                f"synthetic demo memes made by hf_memotion.data.make_demo_data ({candidate.name}/); not real memes: "
                f"scores on it only show that the pipeline learns planted text and image cues"
            )
    return "memotion", f"Memotion release (SemEval-2020 Task 8) read from a local copy ({local.name})"


def _is_local(path: str | os.PathLike) -> bool:
    return isinstance(path, os.PathLike) or os.path.exists(path) or str(path).startswith((".", "/", "~"))


def _load_any(path: Path | str, revision: str | None, options: dict) -> Iterable[tuple[str, datasets.Dataset]]:
    if isinstance(path, str):  # not on disk: a Hub dataset id
        return _load_with_datasets(path, path, revision, options).items()
    path = path.expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        if path.name == TRAIN_CSV:
            return [("train", _load_train_release(path.parent, options))]
        if path.name == TEST_CSV:
            return [("test", _load_test_release(path.parent, options))]
        builder = DATA_FILE_SUFFIXES.get(path.suffix.lower())
        if builder is None:
            raise MemotionFormatError(
                f"cannot read {path}: expected a release folder or a {', '.join(DATA_FILE_SUFFIXES)} file"
            )
        return _load_with_datasets(builder, str(path), revision, options, data_files=str(path)).items()
    if (path / TRAIN_CSV).is_file() or (path / TEST_CSV).is_file():  # one release, or both side by side
        splits = [("train", _load_train_release(path, options))] if (path / TRAIN_CSV).is_file() else []
        if (path / TEST_CSV).is_file():
            splits.append(("test", _load_test_release(path, options)))
        return splits
    train_dirs = sorted(p.parent for p in path.glob(f"*/{TRAIN_CSV}"))
    test_dirs = sorted(p.parent for p in path.glob(f"*/{TEST_CSV}"))
    if len(train_dirs) > 1 or len(test_dirs) > 1:
        found = ", ".join(str(p) for p in train_dirs + test_dirs)
        raise MemotionFormatError(f"{path} holds more than one release of a kind ({found}); pass one folder")
    if train_dirs or test_dirs:
        splits = [("train", _load_train_release(train_dirs[0], options))] if train_dirs else []
        if test_dirs:
            splits.append(("test", _load_test_release(test_dirs[0], options)))
        return splits
    if any(p.suffix.lower() in DATA_FILE_SUFFIXES for p in path.rglob("*") if p.is_file()):
        return _load_with_datasets(str(path), str(path), revision, options).items()
    raise MemotionFormatError(
        f"no Memotion data in {path}: expected {TRAIN_CSV} + {TRAIN_IMAGES}/ (training release), "
        f"{TEST_CSV} + {TEST_TRUTH_NAMES[0]} + {TEST_IMAGES}/ (test release), either one level down, "
        f"or parquet/csv/jsonl files"
    )


# --------------------------------------------------------------------------------------------
# The two release folders
# --------------------------------------------------------------------------------------------


def _read_csv(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a release CSV as strings, empty cells as ``""``; bytes that are not ``encoding`` are an error.

    The error names the file, the line and the bytes (never a silent re-read as Latin-1, which would garble every
    accented character and emoji); a header-only file is an error too.
    """
    data = path.read_bytes()
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise MemotionFormatError(
            f"{path} line {line}: bytes {data[err.start : err.end]!r} are not {encoding}; re-save the file as UTF-8, "
            "or pass encoding=... (e.g. 'cp1252') if it was written in another encoding"
        ) from None
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}") from None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise MemotionFormatError(f"cannot parse {path} as CSV: {err}") from None
    if frame.empty:
        raise MemotionFormatError(f"{path} has a header but no rows")
    return frame


def _columns(frame: pd.DataFrame) -> dict[str, str]:
    """Lower-cased, stripped column name -> actual name (the release's index column is dropped)."""
    out = {}
    for column in frame.columns:
        key = str(column).strip().lower()
        if key and not key.startswith("unnamed:"):
            out[key] = column
    return out


def _require(columns: Mapping[str, str], needed: Iterable[str], source: Path | str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise MemotionFormatError(
            f"{source} lacks column(s) {', '.join(missing)}; found: {', '.join(columns.values()) or 'none'}"
        )


class _ImageFolder:
    """Resolves release image names to files, tolerating a different extension or letter case."""

    def __init__(self, folder: Path):
        self.folder = folder
        names = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        self.by_lower = {n.lower(): n for n in names}
        self.by_stem: dict[str, list[str]] = {}
        for n in names:
            self.by_stem.setdefault(Path(n).stem.lower(), []).append(n)

    def resolve(self, image_name: str) -> str:
        exact = self.folder / image_name
        if exact.is_file():
            return str(exact)
        if image_name.lower() in self.by_lower:
            return str(self.folder / self.by_lower[image_name.lower()])
        candidates = self.by_stem.get(Path(image_name).stem.lower(), [])
        if len(candidates) == 1:
            return str(self.folder / candidates[0])
        return str(exact)  # missing: reported per row by the checks


def _load_train_release(folder: Path, options: dict) -> datasets.Dataset:
    csv_path = folder / TRAIN_CSV
    frame = _read_csv(csv_path, options["encoding"])
    columns = _columns(frame)
    _require(columns, (*_IMAGE_NAME, *RELEASE_COLUMNS), csv_path)
    if _TEXT_CORRECTED[0] not in columns and _TEXT_OCR[0] not in columns:
        raise MemotionFormatError(f"{csv_path} has neither text_corrected nor text_ocr; one of them is needed")
    images_dir = folder / TRAIN_IMAGES
    if not images_dir.is_dir():
        raise MemotionFormatError(f"image folder {images_dir} is missing; the release keeps images in {TRAIN_IMAGES}/")
    frame = _check_image_names(frame, columns, csv_path, options)
    raw = _frame_to_raw(frame, columns, _ImageFolder(images_dir))
    return _standardize(raw, _row_locator(frame, csv_path), options)


def _find_truth_file(folder: Path) -> Path | None:
    for name in TEST_TRUTH_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _load_test_release(folder: Path, options: dict) -> datasets.Dataset:
    csv_path = folder / TEST_CSV
    if not csv_path.is_file():
        raise MemotionFormatError(f"{folder} is not a Memotion test release: {TEST_CSV} is missing")
    frame = _read_csv(csv_path, options["encoding"])
    columns = _columns(frame)
    _require(columns, _IMAGE_NAME, csv_path)
    frame = _check_image_names(frame, columns, csv_path, options)
    truth_path = _find_truth_file(folder)
    if truth_path is not None:
        truth = _read_csv(truth_path, options["encoding"])
        truth_columns = _columns(truth)
        _require(truth_columns, (*_IMAGE_NAME, *_LABEL_STRING), truth_path)
        names = truth[truth_columns["image_name"]].str.strip()
        duplicated = names[names.duplicated()].tolist()
        if duplicated:
            raise MemotionFormatError(f"{truth_path} lists image(s) more than once: {', '.join(duplicated[:5])}")
        labels_by_name = dict(zip(names, truth[truth_columns["labels"]], strict=True))
        image_names = frame[columns["image_name"]].str.strip()
        frame = frame.assign(Labels=[labels_by_name.get(n) for n in image_names])
        columns["labels"] = "Labels"
        missing = [n for n in image_names if n not in labels_by_name]
        if missing and options["on_error"] == "raise":
            raise MemotionFormatError(
                f"{truth_path} has no labels for {len(missing)} image(s) of {csv_path}, e.g. {', '.join(missing[:5])}"
            )
    else:
        logger.warning("%s has no %s: the test split has no labels", folder, TEST_TRUTH_NAMES[0])
    raw = _frame_to_raw(frame, columns, _ImageFolder(folder / TEST_IMAGES))
    where = _row_locator(frame, csv_path)
    if truth_path is not None:  # a label error is about the ground-truth file
        line_of = {n: i + 2 for i, n in enumerate(truth[truth_columns["image_name"]].str.strip())}
        names = list(frame[columns["image_name"]].str.strip())
        where = _truth_locator(names, line_of, csv_path, truth_path)
    return _standardize(raw, where, options)


def _split_locator(source: str, split: str) -> Callable[..., str]:
    def where(i: int, about_labels: bool = False) -> str:
        return f"{source} [{split}] row {i}"

    return where


def _row_locator(frame: pd.DataFrame, csv_path: Path) -> Callable[[int], str]:
    """Row index of the (possibly filtered) frame -> ``file line N`` (its CSV line: header is line 1)."""
    lines = [int(i) + 2 for i in frame.index]

    def where(i: int, about_labels: bool = False) -> str:
        return f"{csv_path} line {lines[i]}"

    return where


def _truth_locator(names: list[str], line_of: dict[str, int], csv_path: Path, truth_path: Path) -> Callable:
    def where(i: int, about_labels: bool = False) -> str:
        if about_labels and names[i] in line_of:
            return f"{truth_path} line {line_of[names[i]]}"
        return f"{csv_path} row of {names[i]!r}"

    return where


def _check_image_names(frame: pd.DataFrame, columns: Mapping[str, str], csv_path: Path, options: dict) -> pd.DataFrame:
    """Image names must name a file inside the image folder, once each (``on_error="skip"`` drops the others)."""
    names = frame[columns["image_name"]].astype(str).str.strip()
    # a plain file name: no separator (so no absolute path or ..), no home or drive prefix
    escaping = names.map(
        lambda n: n in ("", ".", "..") or "/" in n or "\\" in n or n.startswith("~") or (len(n) > 1 and n[1] == ":")
    )
    too_long = names.map(lambda n: len(n.encode("utf-8", "surrogatepass")) > 255) & ~escaping
    duplicated = names.duplicated(keep=False) & ~escaping & ~too_long
    problems = []
    for index in frame.index[escaping]:
        problems.append(f"line {int(index) + 2}: image_name {names[index]!r} leaves the image folder")
    for index in frame.index[too_long]:
        problems.append(f"line {int(index) + 2}: image_name {names[index][:40]!r}... is longer than a file name can be")
    for index in frame.index[duplicated]:
        problems.append(f"line {int(index) + 2}: image_name {names[index]!r} is listed more than once")
    if not problems:
        return frame
    if options["on_error"] == "raise":
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems)} in all)" if len(problems) > 10 else "")
        raise MemotionFormatError(f"{csv_path}: {shown}")
    bad = escaping | too_long | duplicated
    logger.warning(
        "%s: skipped %d row(s) whose image_name leaves the image folder, is too long or repeats",
        csv_path,
        int(bad.sum()),
    )
    return frame[~bad]


def _frame_to_raw(frame: pd.DataFrame, columns: Mapping[str, str], images: _ImageFolder) -> datasets.Dataset:
    """Turn a release CSV into the raw columns :func:`_standardize` reads (image = file path)."""
    data: dict[str, list] = {"image_name": [str(v).strip() for v in frame[columns["image_name"]]]}
    data["image"] = [images.resolve(name) for name in data["image_name"]]
    for key in (*_TEXT_CORRECTED, *_TEXT_OCR, *RELEASE_COLUMNS, *_LABEL_STRING):
        if key in columns:
            data[key] = [None if _is_missing(v) else str(v) for v in frame[columns[key]]]
    return datasets.Dataset.from_dict(data)


# --------------------------------------------------------------------------------------------
# Anything datasets.load_dataset reads
# --------------------------------------------------------------------------------------------


def _load_with_datasets(
    name: str, source: str, revision: str | None, options: dict, data_files: str | None = None
) -> dict[str, datasets.Dataset]:
    try:
        loaded = datasets.load_dataset(name, data_files=data_files, revision=revision)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{source!r} is not a local Memotion folder or file, and loading it as a dataset failed: {err}"
        ) from None
    except (ConnectionError, OSError, ValueError) as err:
        raise FileNotFoundError(
            f"could not load the dataset {source!r} with datasets.load_dataset ({type(err).__name__}: {err}). "
            "For a Hub id, check the name and your network (or HF_HUB_OFFLINE and the local cache); "
            "for local data, pass the folder or file path."
        ) from None
    base = Path(source).parent if Path(source).is_file() else Path(source)
    local = data_files is not None or Path(source).is_dir()
    # path-only images must stay inside the data's folder (a Hub dataset's: the caches it was downloaded to)
    roots = [base] if local else [Path(datasets.config.HF_DATASETS_CACHE), Path(huggingface_hub.constants.HF_HUB_CACHE)]
    options = {**options, "image_roots": [os.path.normpath(os.path.abspath(r)) for r in roots]}
    out = {}
    for split, table in loaded.items():
        raw = _table_to_raw(table, f"{source} [{split}]", base, options)
        out[split] = _standardize(raw, _split_locator(source, split), options)
    return out


def _table_to_raw(table: datasets.Dataset, source: str, base: Path, options: dict) -> datasets.Dataset:
    columns = {c.strip().lower(): c for c in table.column_names}
    if "image" not in columns:
        raise MemotionFormatError(f"{source} lacks an 'image' column; found: {', '.join(table.column_names)}")
    table = table.rename_columns({actual: key for key, actual in columns.items() if actual != key})
    image_feature = table.features["image"]
    if isinstance(image_feature, datasets.Image):
        table = table.cast_column("image", datasets.Image(decode=False))
    elif image_feature == datasets.Value("string") or image_feature == datasets.Value("large_string"):
        table = table.map(
            lambda p: {"image": p if p is None or os.path.isabs(p) else str(base / p)},
            input_columns="image",
            desc="resolving image paths",
        )
    else:
        raise MemotionFormatError(f"{source}: the 'image' column must be images or file paths, not {image_feature}")
    if "image_name" not in table.column_names:
        table = table.map(lambda image: {"image_name": _name_of(image)}, input_columns="image")
    has_text = any(k in table.column_names for k in (*_TEXT_CORRECTED, *_TEXT_OCR, *_TEXT_OURS))
    if not has_text and not options.get("read_missing_text"):
        raise MemotionFormatError(
            f"{source} lacks a text column (text_corrected, text_ocr, corrected_text, OCR_extracted_text or text)"
        )
    return table


def _name_of(image: Any) -> str:
    path = image.get("path") if isinstance(image, dict) else image
    return os.path.basename(path) if path else ""


# --------------------------------------------------------------------------------------------
# Per-row checks and conversion, shared by every source
# --------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text_of(row: Mapping[str, Any]) -> str:
    """``text_corrected`` if not blank, else ``text_ocr``, else our own ``text_raw``/``text``, else ``""``."""
    for key in (*_TEXT_CORRECTED, *_TEXT_OCR, *_TEXT_OURS):
        value = row.get(key)
        if not _is_missing(value) and str(value).strip():
            return str(value).strip()
    return ""


def _label_source(column_names: Sequence[str]) -> str | None:
    if all(name in column_names for name in PROBLEM_NAMES):
        return "problems"
    if all(name in column_names for name in RELEASE_COLUMNS):
        return "release"
    if "labels" in column_names:
        return "labels"
    return None


def _labels_of(row: Mapping[str, Any], source: str) -> dict[str, int]:
    if source == "release":
        out = {}
        for problem in PROBLEMS:
            value = row[problem.release_column]
            if _is_missing(value) or not str(value).strip():
                raise ValueError(f"column {problem.release_column!r} is empty")
            try:
                out[problem.name] = problem.label_from_release(value)
            except ValueError as err:
                raise ValueError(f"column {problem.release_column!r}: {err}") from None
        return out
    if source == "labels":
        value = row["labels"]
        if _is_missing(value) or not str(value).strip():
            raise ValueError("no ground-truth label string")
        return decode_submission(value)
    out = {}
    for problem in PROBLEMS:
        value = row[problem.name]
        if isinstance(value, str) and value in problem.label2id:
            out[problem.name] = problem.label2id[value]
        elif isinstance(value, int | float) and not _is_missing(value) and int(value) == value:
            if not 0 <= int(value) < problem.num_labels:
                raise ValueError(
                    f"column {problem.name!r}: class id {value!r} out of range 0..{problem.num_labels - 1}"
                )
            out[problem.name] = int(value)
        else:
            raise ValueError(f"column {problem.name!r}: {value!r} is neither a class id nor one of {problem.labels}")
    return out


def _check_image(image: Any, verify: bool, roots: Sequence[str] | None = None) -> None:
    if image is None:
        raise ImageDecodeError("no image")
    path = image.get("path") if isinstance(image, dict) else image
    has_bytes = isinstance(image, dict) and image.get("bytes") is not None
    if roots is not None and not has_bytes and path:
        _check_inside_roots(str(path), roots)
    if verify:
        load_rgb_image(image)
        return
    if not has_bytes and not (path and os.path.isfile(path)):
        raise ImageDecodeError(f"image file not found: {path}")


def _check_inside_roots(path: str, roots: Sequence[str]) -> None:
    """Refuse an image path outside the data's folder (absolute elsewhere, or climbing out with ``..``)."""
    normal = os.path.normpath(os.path.abspath(path))
    if not any(normal == root or normal.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
        raise ImageDecodeError(
            f"image path {path!r} leaves the data folder {roots[0]}: image paths must be relative to the data file's "
            "folder and stay inside it (or carry the image bytes)"
        )


def _standardize(raw: datasets.Dataset, where: Callable[[int], str], options: dict) -> datasets.Dataset:
    """Check every row and convert it to :func:`memotion_features`; bad rows raise or are skipped."""
    label_source = _label_source(raw.column_names)
    features = memotion_features(with_labels=label_source is not None)
    verify = options["verify_images"]
    if raw.num_rows == 0:  # every row skipped: an empty split of the right schema
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)

    def convert(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in (*features, "_error")}
        for offset, index in enumerate(indices):
            row = {key: values[offset] for key, values in batch.items()}
            text = _text_of(row)
            result: dict[str, Any] = {"image_name": row.get("image_name") or "", "text": text.lower(), "text_raw": text}
            error = None
            name = f" (image_name={row.get('image_name')!r})" if row.get("image_name") else ""
            try:
                if label_source is not None:
                    result.update(_labels_of(row, label_source))
            except ValueError as err:
                error = f"{where(index, about_labels=True)}{name}: {err}"
            if error is None:
                try:
                    _check_image(row["image"], verify, options.get("image_roots"))
                    result["image"] = row["image"]
                except (ValueError, ImageDecodeError) as err:
                    error = f"{where(index)}{name}: {err}"
            if error is None and not text and options.get("read_missing_text"):
                try:
                    text = read_meme_text(row["image"])
                    result.update(text=text.lower(), text_raw=text)
                except (ValueError, ImageDecodeError) as err:  # Tesseract's time limit: a bad row like any other
                    error = f"{where(index)}{name}: {err}"
            if error is not None:
                result.update({p.name: -1 for p in PROBLEMS if p.name in features})
                result["image"] = None
            for key in features:
                out[key].append(result[key])
            out["_error"].append(error)
        return out

    converted = raw.map(
        convert,
        batched=True,
        batch_size=64,
        with_indices=True,
        remove_columns=raw.column_names,
        features=datasets.Features({**features, "_error": datasets.Value("string")}),
        num_proc=options["num_proc"],
        load_from_cache_file=False,
        desc="checking Memotion rows" if verify else None,
    )
    errors = [e for e in converted["_error"] if e is not None]
    if errors:
        shown = "\n  ".join(errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        if options["on_error"] == "raise":
            raise MemotionFormatError(
                f"{len(errors)} bad row(s); fix them, or pass on_error='skip' to drop them:\n  {shown}{more}"
            )
        message = f"skipped {len(errors)} of {len(converted)} row(s):\n  {shown}{more}"
        warnings.warn(message, stacklevel=4)
        logger.warning(message)
        converted = converted.filter(lambda e: e is None, input_columns="_error")
    return converted.remove_columns("_error")


# --------------------------------------------------------------------------------------------
# Submissions
# --------------------------------------------------------------------------------------------


def write_answer_file(predictions: Any, path: str | os.PathLike) -> Path:
    """Write an official ``answer.txt``: one ``A_hsom_hsom`` line per meme, in the given order.

    Args:
        predictions: A mapping problem name -> class ids (one per meme), a sequence of dicts
            (problem name -> class id), or a sequence of ready ``A_hsom_hsom`` strings. Keep the
            test file's order.
        path: Output file (or folder, which gets ``answer.txt``); written atomically.

    Returns:
        The path written.
    """
    target = Path(path)
    if target.is_dir():
        target = target / "answer.txt"
    columns = to_label_columns(predictions)
    n_rows = len(next(iter(columns.values()), []))
    lines = [encode_submission({name: values[i] for name, values in columns.items()}) for i in range(n_rows)]
    atomic_write_text(target, "".join(f"{line}\n" for line in lines))
    return target


def read_answer_file(path: str | os.PathLike) -> list[dict[str, int]]:
    """Read an ``answer.txt`` back into class ids per problem, one dict per line."""
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(decode_submission(line))
        except ValueError as err:
            raise MemotionFormatError(f"{path} line {number}: {err}") from None
    return out
