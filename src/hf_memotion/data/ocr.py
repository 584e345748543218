r"""Reading a meme's text from its image with Tesseract (the optional ``ocr`` extra).

Install: ``pip install "hf-memotion[ocr]"`` (pytesseract) and Tesseract itself with English data
(Debian/Ubuntu: ``apt-get install tesseract-ocr tesseract-ocr-eng``; macOS: ``brew install tesseract``).

Meme captions are white capitals with a black outline drawn over a photo, which Tesseract reads badly
as it is (it expects dark text on a light page). :func:`caption_mask` keeps only bright, unsaturated
pixels (the caption's fill) and draws them black on white, after upscaling the image so that its longer
side is about 1,000 pixels; Tesseract then reads it as sparse text (``--psm 11``: the top and bottom
captions in reading order). When that finds no word (dark text on a light band, say) the grey image is
read as one block instead. ``scripts/bench_ocr.py`` measures the choices on rendered memes
(:mod:`hf_memotion.data.meme_rendering`); on 40 of them (Tesseract 5.3) word accuracy was 0.97 for the
caption mask against 0.61 for the grey image and 0.44 for the raw colour image (README, "Reading the
text off the image").

The text is cleaned like the Memotion release's ``text_ocr``: lower-cased, on one line, stray symbols
dropped.

Example:
    >>> from hf_memotion.data.meme_rendering import render_meme
    >>> caption_mask(render_meme("top text", seed=0)).mode
    'L'
    >>> clean_ocr_text("WHEN THE EXAM\n| IS ON MONDAY ")
    'when the exam is on monday'
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from hf_memotion.data.images import load_rgb_image

__all__ = [
    "OCR_INSTALL",
    "OCRUnavailableError",
    "caption_mask",
    "check_ocr_available",
    "clean_ocr_text",
    "read_meme_text",
    "upscale_for_reading",
    "word_accuracy",
]

OCR_INSTALL = (
    'pip install "hf-memotion[ocr]" and Tesseract with English data '
    "(Debian/Ubuntu: apt-get install tesseract-ocr tesseract-ocr-eng; macOS: brew install tesseract)"
)
#: Pixels brighter than this in every channel...
BRIGHT = 200
#: ...and with channels closer than this (white, not a bright colour) are caption fill.
MAX_SPREAD = 30
#: The longer side images are upscaled to before reading (smaller text is read worse; larger is slower).
READ_SIZE = 1000
#: Seconds Tesseract may take on one image.
TIMEOUT_S = 60


class OCRUnavailableError(RuntimeError):
    """pytesseract or the Tesseract program (or its English data) is missing; the message says what to install."""


@cache
def check_ocr_available() -> str:
    """The Tesseract version, or :class:`OCRUnavailableError` naming what to install."""
    try:
        import pytesseract
    except ImportError:
        raise OCRUnavailableError(f"pytesseract is not installed: {OCR_INSTALL}") from None
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        raise OCRUnavailableError(f"the tesseract program is not on PATH: {OCR_INSTALL}")
    if "eng" not in pytesseract.get_languages(config=""):
        raise OCRUnavailableError(f"Tesseract has no English data (tesseract-ocr-eng): {OCR_INSTALL}")
    return str(pytesseract.get_tesseract_version())


def upscale_for_reading(image: Image.Image, size: int = READ_SIZE) -> Image.Image:
    """``image`` enlarged (Lanczos) so that its longer side is ``size`` pixels; larger images are left as they are."""
    scale = size / max(image.size)
    if scale <= 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def caption_mask(image: Image.Image) -> Image.Image:
    """White caption fill as black text on a white page (upscaled, speckles removed, with a margin)."""
    pixels = np.asarray(upscale_for_reading(image.convert("RGB")), dtype=np.int16)
    low, high = pixels.min(axis=2), pixels.max(axis=2)
    fill = (low > BRIGHT) & (high - low < MAX_SPREAD)
    page = Image.fromarray(np.where(fill, 0, 255).astype(np.uint8)).filter(ImageFilter.MedianFilter(3))
    return ImageOps.expand(page, 20, fill=255)


_ENVIRONMENT = threading.Lock()


@contextmanager
def _one_openmp_thread() -> Iterator[None]:
    """Run Tesseract with one OpenMP thread (measured twice as fast per image on 2 cores: its threads contend).

    pytesseract passes this process's own environment to Tesseract, so the limit is set only around the call
    (under a lock) and removed after: left set, it would reach torch in every later child process, where
    ``OMP_THREAD_LIMIT=1`` with two intra-op threads was seen to hang training. A limit the user set is kept.
    """
    with _ENVIRONMENT:
        added = "OMP_THREAD_LIMIT" not in os.environ
        if added:
            os.environ["OMP_THREAD_LIMIT"] = "1"
        try:
            yield
        finally:
            if added:
                os.environ.pop("OMP_THREAD_LIMIT", None)


_SYMBOLS_ONLY = re.compile(r"^[^\w]+$")


def clean_ocr_text(raw: str) -> str:
    """Lower-case, one line, single spaces, tokens made only of symbols (``|``, ``—``, ``~``) dropped."""
    tokens = [t for t in raw.lower().split() if not _SYMBOLS_ONLY.match(t)]
    return " ".join(tokens)


def read_meme_text(image: Any) -> str:
    """The text written on a meme (cleaned like the release's ``text_ocr``; ``""`` when none is found).

    Args:
        image: A PIL image, or anything :func:`hf_memotion.data.images.load_rgb_image` decodes.

    Raises:
        OCRUnavailableError: When pytesseract or Tesseract is missing (the message says how to install them).
        ValueError: When Tesseract takes longer than :data:`TIMEOUT_S` on the image.
    """
    check_ocr_available()
    import pytesseract

    rgb = image.convert("RGB") if isinstance(image, Image.Image) else load_rgb_image(image)

    def tesseract(page: Image.Image, layout: int) -> str:
        try:
            with _one_openmp_thread():
                raw = pytesseract.image_to_string(page, config=f"--psm {layout}", timeout=TIMEOUT_S)
            return clean_ocr_text(raw)
        except RuntimeError as err:  # pytesseract's timeout
            raise ValueError(f"Tesseract did not read the image within {TIMEOUT_S} s ({err}); pass its text") from None

    text = tesseract(caption_mask(rgb), 11)
    if not text:  # no white caption: dark text on a light background, read as one block
        text = tesseract(upscale_for_reading(rgb.convert("L")), 6)
    return text


def word_accuracy(reference: str, hypothesis: str) -> float:
    """Share of the reference's words found, in order, in the hypothesis (longest matching blocks).

    Example:
        >>> word_accuracy("when the exam is on monday", "when tne exam is on monday")
        0.8333333333333334
    """
    import difflib

    ref, hyp = re.findall(r"[\w']+", reference.lower()), re.findall(r"[\w']+", hypothesis.lower())
    if not ref:
        return float(not hyp)
    blocks = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_matching_blocks()
    return sum(block.size for block in blocks) / len(ref)
