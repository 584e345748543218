r"""Reading a meme's text from its image with Tesseract (the optional ``ocr`` extra).

Install: ``pip install "hf-memotion[ocr]"`` (pytesseract) and Tesseract itself with English data
(Debian/Ubuntu: ``apt-get install tesseract-ocr tesseract-ocr-eng``; macOS: ``brew install tesseract``).

Meme captions are white capitals with a black outline drawn over a photo, which Tesseract reads badly
as it is (it expects dark text on a light page). :func:`caption_mask` keeps only bright, unsaturated
pixels (the caption's fill) and draws them black on white, after upscaling the image so that its longer
side is about 1,000 pixels; Tesseract then reads it as sparse text (``--psm 11``: the top and bottom
captions in reading order). When that finds no word (dark text on a light band, say) the grey image is
read as one block instead. ``benchmarks/bench_ocr.py`` measures the choices on rendered memes
(:mod:`hf_memotion.data.meme_rendering`); on 40 of them (Tesseract 5.3) word accuracy was 0.97 for the
caption mask against 0.61 for the grey image and 0.44 for the raw colour image (README, "Reading the
text off the image").

The text is cleaned like the Memotion release's ``text_ocr``: lower-cased, on one line, stray symbols
dropped.

Examples:
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
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from hf_memotion.data.images import load_rgb_image

__all__ = [
    "OCR_INSTALL",
    "OCRTimeoutError",
    "OCRUnavailableError",
    "caption_mask",
    "check_ocr_available",
    "clean_ocr_text",
    "read_meme_text",
    "run_tesseract",
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
#: Larger images are scaled down to this longer side before reading: memory and Tesseract's time stay bounded
#: (a caption is readable long before 2,000 pixels).
MAX_READ_SIZE = 2000
#: Seconds Tesseract may take on one image (each of its at most two reads); a caller may pass less.
TIMEOUT_S = 5


class OCRUnavailableError(RuntimeError):
    """pytesseract or the Tesseract program (or its English data) is missing; the message says what to install."""


class OCRTimeoutError(ValueError):
    """Tesseract took longer than its limit on an image (it was stopped); the message says to pass the text."""


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
    """``image`` resized (Lanczos): a longer side below ``size`` up to it, one above :data:`MAX_READ_SIZE` down to it.

    Scaling large images down keeps memory and Tesseract's time bounded.
    """
    longest = max(image.size)
    scale = size / longest if longest < size else min(1.0, MAX_READ_SIZE / longest)
    if scale == 1:
        return image
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if scale < 1:
        return image.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    return image.resize(new_size, Image.Resampling.LANCZOS)


def caption_mask(image: Image.Image) -> Image.Image:
    """White caption fill as black text on a white page (resized for reading, speckles removed, with a margin).

    Computed on the image's own uint8 channels (no wider copy): memory is a few bytes a pixel of the read size.
    """
    pixels = np.asarray(upscale_for_reading(image if image.mode == "RGB" else image.convert("RGB")))
    low, high = pixels.min(axis=2), pixels.max(axis=2)
    np.subtract(high, low, out=high)  # the spread, in place (high >= low: no wrap-around)
    page = np.full(low.shape, 255, dtype=np.uint8)
    page[(low > BRIGHT) & (high < MAX_SPREAD)] = 0
    return ImageOps.expand(Image.fromarray(page).filter(ImageFilter.MedianFilter(3)), 20, fill=255)


def _tesseract_environment() -> dict[str, str]:
    """Tesseract's environment: this process's, with one OpenMP thread unless the user set a limit.

    One thread was measured twice as fast per image on 2 cores (its threads contend). The limit is given to the
    Tesseract call alone (never set in ``os.environ``: there it reached torch in later child processes, where
    ``OMP_THREAD_LIMIT=1`` with two intra-op threads hung training), so no lock is held across the call and
    concurrent reads never wait on each other.
    """
    return {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1")}


def run_tesseract(page: Image.Image, layout: int, timeout: float = TIMEOUT_S) -> str:
    """Tesseract's text of ``page`` (a PNG handed over a pipe), killed after ``timeout`` seconds.

    Run here rather than through pytesseract, which cannot give one call its own environment. The caller checks
    that Tesseract is installed (:func:`check_ocr_available`).

    Raises:
        OCRTimeoutError: Tesseract took longer than ``timeout`` (it was killed).
        ValueError: Tesseract failed on the page.
    """
    import io
    import subprocess

    import pytesseract

    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    command = [pytesseract.pytesseract.tesseract_cmd, "stdin", "stdout", "-l", "eng", "--psm", str(layout)]
    try:
        done = subprocess.run(
            command, input=buffer.getvalue(), capture_output=True, timeout=timeout, env=_tesseract_environment()
        )
    except subprocess.TimeoutExpired:
        raise OCRTimeoutError(
            f"Tesseract did not read the image within {timeout:g} s; pass the meme's text instead"
        ) from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise ValueError(f"Tesseract could not read the image ({message[0]}); pass the meme's text instead")
    return done.stdout.decode("utf-8", "replace")


_SYMBOLS_ONLY = re.compile(r"^[^\w]+$")


def clean_ocr_text(raw: str) -> str:
    """Lower-case, one line, single spaces, tokens made only of symbols (``|``, ``—``, ``~``) dropped."""
    tokens = [t for t in raw.lower().split() if not _SYMBOLS_ONLY.match(t)]
    return " ".join(tokens)


def read_meme_text(image: Any, *, timeout: float = TIMEOUT_S) -> str:
    """The text written on a meme (cleaned like the release's ``text_ocr``; ``""`` when none is found).

    Args:
        image: A PIL image, or anything :func:`hf_memotion.data.images.load_rgb_image` decodes.
        timeout: Seconds Tesseract may take on each of its (at most two) reads of the image.

    Raises:
        OCRUnavailableError: When pytesseract or Tesseract is missing (the message says how to install them).
        OCRTimeoutError: When Tesseract takes longer than ``timeout`` (it is stopped).
    """
    check_ocr_available()
    rgb = image.convert("RGB") if isinstance(image, Image.Image) else load_rgb_image(image)
    text = clean_ocr_text(run_tesseract(caption_mask(rgb), 11, timeout))
    if not text:  # no white caption: dark text on a light background, read as one block
        text = clean_ocr_text(run_tesseract(upscale_for_reading(rgb.convert("L")), 6, timeout))
    return text


def word_accuracy(reference: str, hypothesis: str) -> float:
    """Share of the reference's words found, in order, in the hypothesis (longest matching blocks).

    Examples:
        >>> word_accuracy("when the exam is on monday", "when tne exam is on monday")
        0.8333333333333334
    """
    import difflib

    ref, hyp = re.findall(r"[\w']+", reference.lower()), re.findall(r"[\w']+", hypothesis.lower())
    if not ref:
        return float(not hyp)
    blocks = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_matching_blocks()
    return sum(block.size for block in blocks) / len(ref)
