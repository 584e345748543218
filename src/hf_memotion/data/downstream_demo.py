"""Small downstream tasks in the real release layouts, drawn from the demo engagement corpus's image themes.

Each class is one of the demo corpus's six hidden themes (colour and shape), so a backbone pretrained on
the demo engagement labels has learned something about them and a randomly initialised one has not:
the VisE claim at toy scale. The files follow :mod:`hf_memotion.data.downstream`'s formats exactly
(UnbiasedEmotion, Politics, Hateful Memes, CUB-200-2011, image folder), so the same readers and the same
protocol script run on them and on the real data.

Examples:
    >>> import tempfile
    >>> root = make_demo_downstream(tempfile.mkdtemp(), "image_folder", n_per_class=2, image_size=16)
    >>> sorted(p.name for p in root.iterdir() if p.is_dir())[:3]
    ['fire', 'forest', 'party']
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hf_memotion.data.engagement import _THEMES, _image
from hf_memotion.io_utils import atomic_write_bytes, atomic_write_text, entries_of_marker, staged_folder

__all__ = ["DEMO_TASK_FORMATS", "make_demo_downstream"]

DEMO_TASK_FORMATS = ("unbiased_emotion", "politics", "hateful_memes", "cub", "image_folder")
_NAMES = ("fire", "sea", "forest", "sun", "rain", "party")  # the themes of hf_memotion.data.engagement, in order
_EMOTIONS = ("fear", "love", "joy", "surprise", "sadness", "anger")  # UnbiasedEmotion class of each theme
_HATEFUL_THEMES = {0, 4}  # the binary Hateful Memes stand-in: "hateful" = fire or rain
_RIGHT_THEMES = {1, 3, 5}  # the binary Politics stand-in: "right" = sea, sun or party
_FILLER = ["look", "at", "this", "one", "when", "you", "see", "it", "today", "again", "my", "friend"]


def _caption(theme: int, rng: np.random.Generator) -> str:
    """A meme text: filler words with one weak cue word of the theme half of the time."""
    words = [str(w) for w in rng.choice(_FILLER, 5)]
    if rng.random() < 0.5:
        words.insert(int(rng.integers(len(words))), str(rng.choice(_THEMES[theme]["words"].split())))
    return " ".join(words)


def make_demo_downstream(
    output_dir: str | os.PathLike,
    kind: str,
    *,
    n_per_class: int = 30,
    image_size: int = 64,
    seed: int = 1,
) -> Path:
    """Write a demo downstream task of format ``kind`` into ``output_dir`` and return the folder to read.

    A folder holding the same demo task is reused; one holding another demo task has the files it wrote replaced
    (anything else there is kept); a non-empty folder that is not a demo task is an error (nothing of the user's is
    deleted).

    Args:
        output_dir: Target folder (created; files are written atomically).
        kind: One of :data:`DEMO_TASK_FORMATS`.
        n_per_class: Images per theme.
        image_size: Image side.
        seed: Seed of the images (the demo corpus uses seed 0: these are different images of the same themes).
    """
    if kind not in DEMO_TASK_FORMATS:
        raise ValueError(f"kind must be one of {DEMO_TASK_FORMATS}, got {kind!r}")
    root = Path(output_dir)
    stamp = {"kind": kind, "n_per_class": n_per_class, "image_size": image_size, "seed": seed}
    written = entries_of_marker(MARKER)(root)
    if written is not None and _stamp(root) == stamp:
        return root
    with staged_folder(root, owned=entries_of_marker(MARKER), what="a demo downstream task") as staging:
        _write(staging, kind, n_per_class, image_size, seed)
        entries = sorted(p.name for p in staging.iterdir())
        atomic_write_text(staging / MARKER, json.dumps({"stamp": stamp, "entries": entries}))
    return root


#: The marker of a demo downstream task: its settings and the entries it wrote (what a rewrite may replace).
MARKER = ".demo_downstream"


def _stamp(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text(encoding="utf-8")).get("stamp")
    except (OSError, ValueError, AttributeError):
        return None


def _write(root: Path, kind: str, n_per_class: int, image_size: int, seed: int) -> None:
    """Write the task's files into ``root``."""
    rng = np.random.default_rng(seed)
    items = [(theme, i) for theme in range(len(_THEMES)) for i in range(n_per_class)]
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    images = [_image(_THEMES[theme], rng, image_size) for theme, _ in items]
    if kind == "unbiased_emotion":
        for (theme, i), png in zip(items, images, strict=True):
            shape = _THEMES[theme]["shape"]
            atomic_write_bytes(root / "images" / _EMOTIONS[theme] / shape / f"{_NAMES[theme]}_{i:04d}.png", png)
    elif kind == "politics":  # train/ and test/ (every fourth image of a theme), class folders left/ and right/
        for (theme, i), png in zip(items, images, strict=True):
            split = "test" if i % 4 == 3 else "train"
            side = "right" if theme in _RIGHT_THEMES else "left"
            atomic_write_bytes(root / split / side / f"{_NAMES[theme]}_{i:04d}.png", png)
    elif kind == "image_folder":
        for (theme, i), png in zip(items, images, strict=True):
            atomic_write_bytes(root / _NAMES[theme] / f"{i:04d}.png", png)
    elif kind == "hateful_memes":
        rows = []
        for number, ((theme, _), png) in enumerate(zip(items, images, strict=True)):
            meme_id = 10000 + number
            atomic_write_bytes(root / "img" / f"{meme_id}.png", png)
            rows.append(
                {
                    "id": meme_id,
                    "img": f"img/{meme_id}.png",
                    "label": int(theme in _HATEFUL_THEMES),
                    "text": _caption(theme, rng),
                }
            )
        cut = int(len(rows) * 0.75)
        atomic_write_text(root / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:cut]))
        atomic_write_text(root / "dev.jsonl", "".join(json.dumps(r) + "\n" for r in rows[cut:]))
        unlabelled = [{k: v for k, v in r.items() if k != "label"} for r in rows[cut:]]
        atomic_write_text(root / "test.jsonl", "".join(json.dumps(r) + "\n" for r in unlabelled))
    else:  # CUB-200-2011
        classes = [f"{t + 1:03d}.{_NAMES[t].title()}_Theme" for t in range(len(_THEMES))]
        lines = {"images": [], "labels": [], "split": []}
        for number, ((theme, i), png) in enumerate(zip(items, images, strict=True), start=1):
            relative = f"{classes[theme]}/{_NAMES[theme].title()}_Theme_{i:04d}.png"
            atomic_write_bytes(root / "images" / relative, png)
            lines["images"].append(f"{number} {relative}")
            lines["labels"].append(f"{number} {theme + 1}")
            lines["split"].append(f"{number} {int(i % 2 == 0)}")
        atomic_write_text(root / "images.txt", "\n".join(lines["images"]) + "\n")
        atomic_write_text(root / "image_class_labels.txt", "\n".join(lines["labels"]) + "\n")
        atomic_write_text(root / "train_test_split.txt", "\n".join(lines["split"]) + "\n")
        atomic_write_text(root / "classes.txt", "".join(f"{t + 1} {c}\n" for t, c in enumerate(classes)))
