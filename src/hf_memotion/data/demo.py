"""A deterministic demo dataset in the exact Memotion release layout, with a planted signal.

The generator writes ``memotion_dataset_7k/`` (``labels.csv`` with the release's columns and label
strings, ``images/`` with mixed extensions) and a test release (``2000_testdata.csv``,
``Meme_groundTruth.csv``, ``2000_data/``), so the demo data goes through the same loader as the real
release. Labels are drawn with the real release's class frequencies (so the demo is imbalanced like
Memotion), then planted in the two modalities so that each one holds only part of the answer:

===================  =====================================  ========================================
release column       text (words in the caption)            image (what is drawn)
===================  =====================================  ========================================
overall_sentiment    polarity word (negative/neutral/        background colour, one of five (the
                     positive: 3 groups of the 5 grades)     5-grade value), in ``image_signal`` cases
humour, sarcasm,     a word for the *upper or lower half*    a marker in the emotion's corner whose
offensive            of the four grades (grade // 2)         colour gives the grade's *parity*
                                                             (grade % 2)
motivational         a word for the class                    the marker colour for the class
===================  =====================================  ========================================

So for the four-grade emotions, text alone tells {0,1} from {2,3} and the image alone tells
{0,2} from {1,3}: only the two together identify the grade (subtask C) or tell "not" from the
rest (subtask B). Sentiment and motivational are carried by both, each with independent noise.
Every cue is replaced by a random one with probability ``1 - text_signal`` (text) or
``1 - image_signal`` (image), markers jitter in place and size, and the images carry pixel
noise and grey distractor shapes: single-modality models learn part of it, and a cross-modal
ensemble measurably beats both.

Examples:
    >>> from hf_memotion.data import make_demo_data, load_memotion
    >>> root = make_demo_data("/tmp/memotion_demo_example", n_train=20, n_test=8, seed=1)
    >>> ds = load_memotion(root)
    >>> ds["train"].num_rows, ds["test"].num_rows
    (20, 8)
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from hf_memotion.io_utils import staged_folder
from hf_memotion.tasks import EMOTIONS, PROBLEMS, RELEASE_LABELS, encode_submission

__all__ = [
    "EMOTION_WORDS",
    "MARKER_CORNERS",
    "RELEASE_COUNTS",
    "SENTIMENT_WORDS",
    "DemoDataRunSpec",
    "DemoDataSpec",
    "make_demo_data",
    "print_demo_statistics",
    "write_demo_data",
]

#: Class counts of the real training release (FORMATS.md); the demo samples with these frequencies.
RELEASE_COUNTS: dict[str, tuple[int, ...]] = {
    "humour": (1651, 2452, 2238, 651),
    "sarcasm": (1544, 3507, 1547, 394),
    "offensive": (2713, 2592, 1466, 221),
    "motivational": (4525, 2467),
    "overall_sentiment": (151, 480, 2201, 3127, 1033),
}

#: The release's mix of image file extensions (name suffix, Pillow format, relative frequency).
_EXTENSIONS = (
    ("jpg", "JPEG", 60),
    ("png", "PNG", 15),
    ("jpeg", "JPEG", 8),
    ("JPG", "JPEG", 7),
    ("PNG", "PNG", 5),
    ("bmp", "BMP", 3),
    ("jpe", "JPEG", 2),
)

_BACKGROUNDS = ((230, 60, 60), (240, 160, 40), (200, 200, 200), (70, 170, 230), (80, 200, 90))
_MARKER_COLOURS = ((30, 30, 220), (240, 230, 20))  # parity 0 / 1 (motivational: class 0 / 1)
#: Each emotion's quadrant ``(column, row)``: its marker is drawn inside it (what explanations are checked against).
MARKER_CORNERS = {"humour": (0, 0), "sarcasm": (1, 0), "offensive": (0, 1), "motivational": (1, 1)}
_SHAPES = {"humour": "ellipse", "sarcasm": "rectangle", "offensive": "triangle", "motivational": "ellipse"}

#: The planted cue words: the sentiment's per polarity, each emotion's per half of its grades (lower, upper).
SENTIMENT_WORDS = (("awful", "hate"), ("okay", "whatever"), ("love", "awesome"))
EMOTION_WORDS = {  # per emotion: words for the lower half of the grades, then the upper half
    "humour": (("serious", "boring"), ("lol", "hilarious")),
    "sarcasm": (("honestly", "sincerely"), ("sure", "totally")),
    "offensive": (("kind", "polite"), ("stupid", "trash")),
    "motivational": (("random", "meanwhile"), ("dream", "believe")),
}
_FILLER = (
    "when",
    "you",
    "the",
    "me",
    "my",
    "friend",
    "mom",
    "teacher",
    "monday",
    "exam",
    "cat",
    "dog",
    "internet",
    "phone",
    "school",
    "work",
    "boss",
    "pizza",
    "game",
    "night",
    "morning",
    "after",
    "before",
    "says",
    "trying",
    "finally",
    "again",
    "that",
    "feeling",
    "every",
    "time",
    "nobody",
    "literally",
    "just",
    "be",
    "like",
    "meme",
    "year",
    "weekend",
    "coffee",
)


@dataclass(frozen=True)
class DemoDataSpec:
    """Settings of the demo generator.

    Attributes:
        n_train: Rows in the training release.
        n_test: Rows in the test release (0 writes none).
        seed: Seed of the whole generation; the same seed gives byte-identical files.
        image_size: Side of the square images, in pixels.
        text_signal: Probability that a text cue shows the true value (else a random one).
        image_signal: Probability that an image cue shows the true value (else a random one).
        missing_corrected: Fraction of rows whose ``text_corrected`` is empty (a release quirk).

    Examples:
        >>> DemoDataSpec(n_train=100).n_test
        200
    """

    n_train: int = 800
    n_test: int = 200
    seed: int = 0
    image_size: int = 96
    text_signal: float = 0.85
    image_signal: float = 0.85
    missing_corrected: float = 0.05

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_test < 0:
            raise ValueError(f"n_train must be >= 1 and n_test >= 0, got {self.n_train} and {self.n_test}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {self.image_size}")
        for name in ("text_signal", "image_signal", "missing_corrected"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


class _Generator:
    def __init__(self, config: DemoDataSpec):
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        total = sum(f for _, _, f in _EXTENSIONS)
        self.ext_probs = np.array([f / total for _, _, f in _EXTENSIONS])

    def grades(self) -> dict[str, int]:
        out = {}
        for column, counts in RELEASE_COUNTS.items():
            probs = np.asarray(counts, dtype=float) / sum(counts)
            out[column] = int(self.rng.choice(len(counts), p=probs))
        return out

    def _noisy(self, value: int, n_values: int, signal: float) -> int:
        return value if self.rng.random() < signal else int(self.rng.integers(n_values))

    def text(self, grades: dict[str, int]) -> str:
        signal = self.config.text_signal
        polarity = (0, 0, 1, 2, 2)[grades["overall_sentiment"]]
        words = [self._pick(SENTIMENT_WORDS[self._noisy(polarity, 3, signal)])]
        for emotion in EMOTIONS:
            half = grades[emotion] if emotion == "motivational" else grades[emotion] // 2
            words.append(self._pick(EMOTION_WORDS[emotion][self._noisy(half, 2, signal)]))
        words += [self._pick(_FILLER) for _ in range(int(self.rng.integers(4, 11)))]
        order = self.rng.permutation(len(words))
        return " ".join(words[i] for i in order)

    def _pick(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def ocr(self, text: str) -> str:
        """Upper-case OCR-style text with a few character errors."""
        chars = list(text.upper())
        for i in range(len(chars)):
            if chars[i].isalpha() and self.rng.random() < 0.02:
                chars[i] = chr(ord("A") + int(self.rng.integers(26)))
        return "".join(chars)

    def image(self, grades: dict[str, int]) -> Image.Image:
        size, signal = self.config.image_size, self.config.image_signal
        background = _BACKGROUNDS[self._noisy(grades["overall_sentiment"], 5, signal)]
        canvas = np.empty((size, size, 3), dtype=np.float32)
        canvas[:] = background
        image = Image.fromarray(canvas.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(self.rng.integers(1, 4))):  # grey distractors anywhere
            x, y = self.rng.integers(0, size - 12, size=2)
            w, h = self.rng.integers(6, size // 4, size=2)
            grey = int(self.rng.integers(60, 200))
            draw.rectangle((int(x), int(y), int(x + w), int(y + h)), fill=(grey, grey, grey))
        half = size // 2
        for emotion in EMOTIONS:
            value = grades[emotion] if emotion == "motivational" else grades[emotion] % 2
            colour = _MARKER_COLOURS[self._noisy(value, 2, signal)]
            cx, cy = MARKER_CORNERS[emotion]
            radius = int(self.rng.integers(size // 10, size // 6))
            jitter = self.rng.integers(-size // 16, size // 16 + 1, size=2)
            x0 = cx * half + half // 2 + int(jitter[0]) - radius
            y0 = cy * half + half // 2 + int(jitter[1]) - radius
            box = (x0, y0, x0 + 2 * radius, y0 + 2 * radius)
            if _SHAPES[emotion] == "ellipse":
                draw.ellipse(box, fill=colour)
            elif _SHAPES[emotion] == "rectangle":
                draw.rectangle(box, fill=colour)
            else:
                draw.polygon(
                    [(x0 + radius, y0), (x0, y0 + 2 * radius), (x0 + 2 * radius, y0 + 2 * radius)], fill=colour
                )
        pixels = np.asarray(image, dtype=np.float32) + self.rng.normal(0.0, 12.0, size=(size, size, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    def extension(self) -> tuple[str, str]:
        suffix, fmt, _ = _EXTENSIONS[int(self.rng.choice(len(_EXTENSIONS), p=self.ext_probs))]
        return suffix, fmt


def _encode_image(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _labels_of_grades(grades: dict[str, int]) -> dict[str, int]:
    release = {column: RELEASE_LABELS[column][g] for column, g in grades.items()}
    return {p.name: p.label_from_release(release[p.release_column]) for p in PROBLEMS}


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_demo_data(output_dir: str | os.PathLike, *, overwrite: bool = False, **settings: Any) -> Path:
    """Write the demo dataset and return its root folder.

    The root holds ``memotion_dataset_7k/`` (training release) and ``memotion_test_release/``
    (test release); ``load_memotion(root)`` reads both. Files are written to a temporary folder
    and moved into place at the end, so an interrupted run leaves no half-written dataset.

    Args:
        output_dir: Root folder to create.
        overwrite: Replace an existing demo dataset (its files; anything else in the folder is kept). Without it,
            an existing complete demo dataset made with the same settings is reused as it is, and anything else
            there is an error; a folder that is no demo dataset is never written over.
        **settings: Fields of :class:`DemoDataSpec` (``n_train``, ``n_test``, ``seed``, ...).

    Returns:
        The root folder.
    """
    config = DemoDataSpec(**settings)
    root = Path(output_dir)
    stamp = repr(config)
    marker = root / ".demo_config"
    if marker.is_file() and not overwrite:
        if marker.read_text().partition("(")[2] == stamp.partition("(")[2]:  # the settings decide, not the class name
            return root
        raise FileExistsError(
            f"{root} holds a demo dataset made with other settings; pass overwrite=True (--overwrite) to replace it, "
            "or choose another folder"
        )
    with staged_folder(root, owned=_demo_entries, what="the demo dataset") as staging:
        _generate(config, staging)
        (staging / ".demo_config").write_text(stamp)
    return root


def _demo_entries(root: Path) -> list[str] | None:
    """What a demo dataset holds (a rewrite replaces these and keeps anything else), or ``None`` for another folder."""
    if not (root / ".demo_config").is_file():
        return None
    return [".demo_config", "memotion_dataset_7k", "memotion_test_release"]


def _generate(config: DemoDataSpec, root: Path) -> None:
    gen = _Generator(config)
    train_dir, test_dir = root / "memotion_dataset_7k", root / "memotion_test_release"
    (train_dir / "images").mkdir(parents=True)
    columns = ["", "image_name", "text_ocr", "text_corrected", *RELEASE_LABELS]
    rows, test_rows, truth_rows = [], [], []
    progress = tqdm(total=config.n_train + config.n_test, desc="demo memes", unit="meme", leave=False)
    for index in range(config.n_train + config.n_test):
        grades = gen.grades()
        text = gen.text(grades)
        suffix, fmt = gen.extension()
        image = _encode_image(gen.image(grades), fmt)
        ocr = gen.ocr(text)
        corrected = "" if gen.rng.random() < config.missing_corrected else text.capitalize()
        if index < config.n_train:
            name = f"image_{index + 1}.{suffix}"
            (train_dir / "images" / name).write_bytes(image)
            labels = [RELEASE_LABELS[c][grades[c]] for c in RELEASE_LABELS]
            rows.append([str(index), name, ocr, corrected, *labels])
        else:
            name = f"test_{index - config.n_train + 1}.{suffix}"
            (test_dir / "2000_data").mkdir(parents=True, exist_ok=True)
            (test_dir / "2000_data" / name).write_bytes(image)
            test_rows.append([name, f"https://example.invalid/memes/{name}", ocr, corrected])
            truth_rows.append([name, encode_submission(_labels_of_grades(grades))])
        progress.update()
    progress.close()
    _write_csv(train_dir / "labels.csv", columns, rows)
    if config.n_test:
        _write_csv(
            test_dir / "2000_testdata.csv",
            ["Image_name", "Image_URL", "OCR_extracted_text", "corrected_text"],
            test_rows,
        )
        _write_csv(test_dir / "Meme_groundTruth.csv", ["Image_name", "Labels"], truth_rows)


@dataclass
class DemoDataRunSpec:
    """What ``scripts/make_demo_data.py`` reads from a run config: its ``data.demo`` section and ``overwrite``.

    The other sections of the run config (models, training...) are not this command's and are left alone.

    Examples:
        >>> DemoDataRunSpec.from_dict({"data": {"demo": {"n_train": 30}}, "models": []}).settings()
        {'n_train': 30}
    """

    data: dict = field(default_factory=lambda: {"demo": {}})
    overwrite: bool = False

    @classmethod
    def from_dict(cls, values: dict | None, *, source: str | None = None) -> DemoDataRunSpec:
        """Take ``data`` and ``overwrite`` from a config; the demo section's keys are checked."""
        from hf_memotion.specs import SpecError, check_keys, parse_spec

        values = dict(values or {})
        spec = parse_spec(cls, {k: values[k] for k in ("data", "overwrite") if k in values}, source=source)
        if "demo" not in (spec.data or {}):
            raise SpecError(f"{source or 'the config'}: the data section has no 'demo' settings to generate")
        demo = dict(spec.data["demo"] or {})
        check_keys(demo, ["output_dir", *(f.name for f in fields(DemoDataSpec))], section="data.demo", source=source)
        return spec

    def settings(self) -> dict:
        """The demo generator's settings (without ``output_dir``)."""
        return {k: v for k, v in dict(self.data["demo"] or {}).items() if k != "output_dir"}

    def output_dir(self) -> Path:
        """Where the data goes (``data.demo.output_dir``, default ``outputs/demo_data``)."""
        return Path(dict(self.data["demo"] or {}).get("output_dir", "outputs/demo_data"))


def write_demo_data(spec: DemoDataRunSpec) -> Path:
    """Generate the demo data a :class:`DemoDataRunSpec` describes; return its root."""
    return make_demo_data(spec.output_dir(), overwrite=spec.overwrite, **spec.settings())


def print_demo_statistics(root: Path, spec: DemoDataRunSpec | None = None) -> None:
    """Load the demo data back and print where it is and its label statistics."""
    from hf_memotion.data.memotion import load_memotion
    from hf_memotion.data.statistics import format_statistics

    print(f"Demo Memotion data in {root} (release layout: memotion_dataset_7k/, memotion_test_release/)")
    print(format_statistics(load_memotion(root)))
