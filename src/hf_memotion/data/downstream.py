"""Downstream tasks of the VisE evaluation (Section 4 of the VisE paper), read from their real release formats.

Each reader returns a :class:`DownstreamTask`: label names, the metric, and one or more
``DatasetDict`` s with ``train``/``validation``/``test`` splits whose rows hold ``image`` (a path;
decoded later by the library's checked decoder), ``label`` and, for Hateful Memes, ``text``.

- **UnbiasedEmotion** ``images/<emotion>/<object>/<file>``: six classes ordered by name; no official
  split, so ``n_splits`` random 70/10/20 splits (drawn per class, so that every class is in every
  split) whose results are reported as mean and standard deviation.
- **Politics** ``{train,test}/{left,right}/<file>``, or ``train.csv`` and ``test.csv`` (columns ``image``, a path
  relative to the folder, and ``label``, ``left``/``right``): the official test set is the test split; the
  validation split is a random 10% of the official train set (per class), the rest trains (the paper's split).
- **Hateful Memes** ``img/*.png`` + ``train.jsonl``, ``dev.jsonl`` (or ``dev_seen.jsonl``): the labelled
  ``dev`` set is the reported split (the release's ``test`` files carry no labels).
- **CUB-200-2011** ``images/``, ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
  ``classes.txt``: the official train/test split; the official test set is the reported split.

Where hyperparameters are selected differs for the last two (``selection``): ``"held_out"`` (the default) trains on
90% of train and selects on the other 10% (per class), so the reported split is never looked at before the end;
``"paper"`` trains on all of train and selects on the reported split itself, as the paper does (its numbers are
then comparable with the paper's, but optimistic). UnbiasedEmotion and Politics have their own validation split
either way.
- **Image folder** ``<root>/<class>/<file>`` (random 70/10/20 splits), or ``<root>/{train,val,test}/<class>/``
  (those splits; without ``val``, 10% of train).

Examples:
    >>> sorted(TASK_READERS)
    ['cub', 'hateful_memes', 'image_folder', 'politics', 'unbiased_emotion']
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from hf_memotion.folder_safety import check_data_name

__all__ = [
    "FORMATS_WITH_TEXT",
    "IMAGE_SUFFIXES",
    "TASK_READERS",
    "DownstreamTask",
    "random_splits",
    "read_cub",
    "read_hateful_memes",
    "read_image_folder",
    "read_politics",
    "read_task",
    "read_unbiased_emotion",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
UNBIASED_EMOTIONS = ("anger", "fear", "joy", "love", "sadness", "surprise")
POLITICS_CLASSES = ("left", "right")
#: Formats whose rows carry a text (multi-modal tasks).
FORMATS_WITH_TEXT = ("hateful_memes",)
SELECTIONS = ("held_out", "paper")


@dataclass
class DownstreamTask:
    """A downstream task: what to predict, how it is scored, and its split(s).

    Attributes:
        name: Task name (a key of :data:`TASK_READERS`, or the user's).
        label_names: Class names; ``label`` holds indices into them.
        metric: ``"accuracy"`` or ``"roc_auc"`` (binary; accuracy is reported second).
        repeats: One ``DatasetDict`` (train/validation/test) per random split (several for UnbiasedEmotion).
        has_text: Rows carry ``text`` (multi-modal: a frozen text encoder's embedding joins the image features).

    Examples:
        >>> rows = {"image": ["a.png", "b.png"], "label": [0, 1]}
        >>> split = datasets.Dataset.from_dict(rows)
        >>> task = DownstreamTask("toy", ["no", "yes"], "accuracy",
        ...                       [datasets.DatasetDict(train=split, validation=split, test=split)])
        >>> task.sizes()
        {'train': 2, 'validation': 2, 'test': 2}
    """

    name: str
    label_names: list[str]
    metric: str
    repeats: list[datasets.DatasetDict] = field(default_factory=list)
    has_text: bool = False

    def sizes(self) -> dict[str, int]:
        """Rows per split (of the first repeat)."""
        return {name: len(split) for name, split in self.repeats[0].items()}


def _inside(base: Path, name: Any, where: str) -> Path:
    """``base / name`` for an image name read from a data file, refused (naming ``where``) if it leaves ``base``."""
    return base / check_data_name(name, where, base)


def _label(value: Any, allowed: Sequence[int], where: str) -> int:
    """An integer class label from a data file, or a ``ValueError`` naming ``where`` and the allowed values."""
    known = {str(a) for a in allowed}
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() not in known:
        raise ValueError(f"{where}: label {value!r} is not one of {list(allowed)}")
    return int(value)


def _dataset(images: Sequence[str], labels: Sequence[int], texts: Sequence[str] | None = None) -> datasets.Dataset:
    columns: dict[str, list] = {"image": [str(p) for p in images], "label": [int(x) for x in labels]}
    if texts is not None:
        columns["text"] = [str(t) for t in texts]
    return datasets.Dataset.from_dict(columns)


def random_splits(labels: Sequence[int], fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Indices of a random split with the given fractions, drawn per class (every class in every split).

    Hand-written because scikit-learn's stratified splitters cut in two and refuse classes with one example;
    here each class of n items gives round(n x fraction) (at least one, when n allows) to every split but the
    last, which takes the rest.

    Examples:
        >>> [len(s) for s in random_splits([0] * 10 + [1] * 10, (0.7, 0.1, 0.2), seed=0)]
        [14, 2, 4]
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in fractions]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        counts = [round(n * f) for f in fractions[:-1]]
        if n >= len(fractions):  # a class with enough items has at least one in every split
            counts = [max(1, c) for c in counts]
            while sum(counts) > n - 1:
                counts[int(np.argmax(counts))] -= 1
        bounds = np.cumsum([0, *counts, n - sum(counts)])
        for i in range(len(fractions)):
            parts[i].extend(members[bounds[i] : bounds[i + 1]].tolist())
    return [np.sort(np.asarray(p, dtype=int)) for p in parts]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _three_way(
    name: str, images, labels, label_names, metric: str, n_splits: int, seed: int, fractions=(0.7, 0.1, 0.2)
) -> DownstreamTask:
    repeats = []
    for repeat in range(n_splits):
        train, validation, test = random_splits(labels, fractions, seed + repeat)
        pick = lambda idx: _dataset([images[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
        repeats.append(datasets.DatasetDict(train=pick(train), validation=pick(validation), test=pick(test)))
    return DownstreamTask(name, list(label_names), metric, repeats)


def read_unbiased_emotion(root: str | os.PathLike, *, n_splits: int = 5, seed: int = 0) -> DownstreamTask:
    """UnbiasedEmotion: ``images/<emotion>/<object>/<file>``, ``n_splits`` random 70/10/20 splits."""
    base = Path(root) / "images"
    emotions = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    images, labels = [], []
    for label, emotion in enumerate(emotions):
        for path in _images_in(base / emotion):
            if len(path.relative_to(base / emotion).parts) != 2:
                raise ValueError(f"{path}: UnbiasedEmotion images sit at images/<emotion>/<object>/<file>")
            images.append(path)
            labels.append(label)
    if not images:
        raise FileNotFoundError(f"no images under {base}/<emotion>/<object>/ (the UnbiasedEmotion layout)")
    if set(emotions) != set(UNBIASED_EMOTIONS):
        logger.warning("UnbiasedEmotion has the classes %s; %s found", UNBIASED_EMOTIONS, emotions)
    return _three_way("unbiased_emotion", images, labels, emotions, "accuracy", n_splits, seed)


def _read_jsonl(path: Path) -> list[tuple[str, dict]]:
    """Each row of a JSON-lines file, with where it is (``"<file> line N"``)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {number} is not JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {number} is not a JSON object (Hateful Memes rows are objects)")
        missing = {"img", "label", "text"} - set(row)
        if missing:
            raise ValueError(f"{path} line {number} lacks {sorted(missing)} (Hateful Memes rows need img, text, label)")
        rows.append((f"{path} line {number}", row))
    return rows


def _selection_splits(
    name: str,
    train: datasets.Dataset,
    reported: datasets.Dataset,
    selection: str,
    seed: int,
    validation_fraction: float,
) -> datasets.DatasetDict:
    """``train``/``validation``/``test`` for a task with one reported split (see the module on ``selection``)."""
    if selection not in SELECTIONS:
        raise ValueError(f"{name}: selection must be 'held_out' or 'paper', got {selection!r}")
    if selection == "paper":
        return datasets.DatasetDict(train=train, validation=reported, test=reported)
    keep, validation = random_splits(train["label"], (1 - validation_fraction, validation_fraction), seed)
    return datasets.DatasetDict(train=train.select(keep), validation=train.select(validation), test=reported)


def read_hateful_memes(
    root: str | os.PathLike, *, seed: int = 0, validation_fraction: float = 0.1, selection: str = "held_out"
) -> DownstreamTask:
    """Hateful Memes (Phase 1): ``train.jsonl`` and the labelled ``dev`` set (``dev.jsonl`` or ``dev_seen.jsonl``).

    ``selection="paper"`` selects on the dev set it reports (the paper), ``"held_out"`` on 10% of train.
    """
    base = Path(root)
    train_file = base / "train.jsonl"
    dev_file = next((base / n for n in ("dev.jsonl", "dev_seen.jsonl") if (base / n).is_file()), None)
    if not train_file.is_file() or dev_file is None:
        raise FileNotFoundError(f"{base} needs train.jsonl and dev.jsonl (or dev_seen.jsonl): the Hateful Memes layout")
    train_rows, dev_rows = _read_jsonl(train_file), _read_jsonl(dev_file)

    def build(rows: list[tuple[str, dict]]) -> datasets.Dataset:
        images = [_inside(base, row["img"], where) for where, row in rows]
        labels = [_label(row["label"], (0, 1), where) for where, row in rows]
        return _dataset(images, labels, [str(row["text"]) for _, row in rows])

    splits = _selection_splits(
        "hateful_memes", build(train_rows), build(dev_rows), selection, seed, validation_fraction
    )
    return DownstreamTask("hateful_memes", ["not_hateful", "hateful"], "roc_auc", [splits], has_text=True)


def _politics_csv(path: Path, base: Path) -> tuple[list[Path], list[int]]:
    import csv

    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"image", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} lacks the column(s) {sorted(missing)} (Politics CSVs hold image, label)")
        images, labels = [], []
        for number, row in enumerate(reader, start=2):
            label = str(row["label"]).strip().lower()
            if label not in POLITICS_CLASSES and label not in ("0", "1"):
                raise ValueError(f"{path} line {number}: label {row['label']!r} is not left/right (or 0/1)")
            images.append(_inside(base, row["image"], f"{path} line {number}"))
            labels.append(POLITICS_CLASSES.index(label) if label in POLITICS_CLASSES else int(label))
    return images, labels


def read_politics(root: str | os.PathLike, *, seed: int = 0, validation_fraction: float = 0.1) -> DownstreamTask:
    """Politics (visual political bias): the official test set, and 90/10 of the official train set (per class).

    Layouts: ``{train,test}/{left,right}/<file>`` or ``train.csv`` + ``test.csv`` (``image`` relative to the
    folder, ``label`` ``left``/``right`` or ``0``/``1``). Accuracy on the test set, selection on the 10%.
    """
    base = Path(root)
    if (base / "train.csv").is_file() and (base / "test.csv").is_file():
        parts = {name: _politics_csv(base / f"{name}.csv", base) for name in ("train", "test")}
    elif all((base / name / c).is_dir() for name in ("train", "test") for c in POLITICS_CLASSES):
        parts = {}
        for name in ("train", "test"):
            items = [(p, i) for i, c in enumerate(POLITICS_CLASSES) for p in _images_in(base / name / c)]
            parts[name] = ([p for p, _ in items], [i for _, i in items])
    else:
        raise FileNotFoundError(
            f"{base}: Politics needs train/{{left,right}}/ and test/{{left,right}}/ image folders, "
            "or train.csv and test.csv (columns image, label)"
        )
    for name, (images, _) in parts.items():
        if not images:
            raise FileNotFoundError(f"{base}: the Politics {name} split has no images")
    images, labels = parts["train"]
    keep, validation = random_splits(labels, (1 - validation_fraction, validation_fraction), seed)
    splits = datasets.DatasetDict(
        train=_dataset([images[i] for i in keep], [labels[i] for i in keep]),
        validation=_dataset([images[i] for i in validation], [labels[i] for i in validation]),
        test=_dataset(*parts["test"]),
    )
    return DownstreamTask("politics", list(POLITICS_CLASSES), "accuracy", [splits])


def _table(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing (CUB-200-2011 ships images.txt, image_class_labels.txt, "
            "train_test_split.txt, classes.txt)"
        )
    out = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            key, _, value = line.strip().partition(" ")
            if not value:
                raise ValueError(f"{path} line {number}: expected '<id> <value>'")
            out[key] = value.strip()
    return out


def read_cub(
    root: str | os.PathLike, *, seed: int = 0, validation_fraction: float = 0.1, selection: str = "held_out"
) -> DownstreamTask:
    """CUB-200-2011 with its official train/test split (the test set is the paper's "val" set it reports).

    ``selection="paper"`` selects on the reported set (the paper), ``"held_out"`` on 10% of train.
    """
    base = Path(root)
    paths, classes = _table(base / "images.txt"), _table(base / "image_class_labels.txt")
    is_train, names = _table(base / "train_test_split.txt"), _table(base / "classes.txt")
    class_ids = sorted(names, key=int)
    label_names = [names[c].split(".", 1)[-1] for c in class_ids]
    index = {c: i for i, c in enumerate(class_ids)}
    train, test = ([], []), ([], [])
    for image_id, relative in paths.items():
        if image_id not in classes or image_id not in is_train:
            raise ValueError(f"image {image_id} ({relative}) lacks a class or a train/test flag")
        target = train if is_train[image_id] == "1" else test
        target[0].append(_inside(base / "images", relative, f"{base / 'images.txt'} image {image_id}"))
        if classes[image_id] not in index:
            raise ValueError(
                f"{base / 'image_class_labels.txt'}: image {image_id} has class {classes[image_id]!r}, "
                "which classes.txt does not list"
            )
        target[1].append(index[classes[image_id]])
    splits = _selection_splits("cub", _dataset(*train), _dataset(*test), selection, seed, validation_fraction)
    return DownstreamTask("cub", label_names, "accuracy", [splits])


def _class_folder(folder: Path) -> tuple[list[Path], list[str]]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    items = [(path, name) for name in names for path in _images_in(folder / name)]
    return [p for p, _ in items], [n for _, n in items]


def read_image_folder(
    root: str | os.PathLike, *, n_splits: int = 1, seed: int = 0, name: str = "image_folder"
) -> DownstreamTask:
    """``<root>/<class>/<file>`` (random 70/10/20 splits) or ``<root>/{train,val,test}/<class>/<file>``."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{base} is not a folder of class folders")
    if (base / "train").is_dir() and (base / "test").is_dir():
        train_paths, train_names = _class_folder(base / "train")
        label_names = sorted(set(train_names))
        index = {n: i for i, n in enumerate(label_names)}

        def build(paths, class_names) -> datasets.Dataset:
            unknown = sorted(set(class_names) - set(index))
            if unknown:
                raise ValueError(f"classes {unknown} are not in {base / 'train'}")
            return _dataset(paths, [index[n] for n in class_names])

        test = build(*_class_folder(base / "test"))
        val_folder = next((base / n for n in ("val", "validation") if (base / n).is_dir()), None)
        if val_folder is not None:
            train, validation = build(train_paths, train_names), build(*_class_folder(val_folder))
        else:
            keep, held = random_splits([index[n] for n in train_names], (0.9, 0.1), seed)
            train = build([train_paths[i] for i in keep], [train_names[i] for i in keep])
            validation = build([train_paths[i] for i in held], [train_names[i] for i in held])
        return DownstreamTask(
            name, label_names, "accuracy", [datasets.DatasetDict(train=train, validation=validation, test=test)]
        )
    paths, class_names = _class_folder(base)
    if not paths:
        raise FileNotFoundError(f"no images in {base}/<class>/ (or {base}/train/<class>/ and {base}/test/<class>/)")
    label_names = sorted(set(class_names))
    labels = [label_names.index(n) for n in class_names]
    return _three_way(name, paths, labels, label_names, "accuracy", n_splits, seed)


TASK_READERS = {
    "unbiased_emotion": read_unbiased_emotion,
    "politics": read_politics,
    "hateful_memes": read_hateful_memes,
    "cub": read_cub,
    "image_folder": read_image_folder,
}


def read_task(kind: str, root: str | os.PathLike, **options) -> DownstreamTask:
    """Read a task of one of the :data:`TASK_READERS` kinds from ``root``."""
    if kind not in TASK_READERS:
        raise ValueError(f"unknown task format {kind!r}; choose one of {sorted(TASK_READERS)}")
    return TASK_READERS[kind](root, **options)
