"""Meme-like images with known captions: what the OCR tests and ``benchmarks/bench_ocr.py`` measure on.

A caption is drawn the way image macros draw it: bold sans-serif capitals, white with a black outline,
centred at the top and/or bottom, on a photo-like background (smooth colour fields with shapes, bright
and dark areas) or a flat colour. The font is DejaVu Sans Bold, which matplotlib ships (Impact itself is
not free to redistribute).

Examples:
    >>> image = render_meme("when the exam is on monday", "and you studied", seed=0)
    >>> image.size, image.mode
    ((480, 480), 'RGB')
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["CAPTION_WORDS", "meme_font_path", "random_caption", "render_meme"]

_CAPTION_TEXT = (
    "when the exam is on monday and you studied nothing but your friend says it will be easy "
    "me trying to explain why i need another coffee nobody literally every teacher ever "
    "that moment you realize weekend is over already meanwhile my brain at three am "
    "one does not simply walk into class late boss makes dollar i make dime thats why "
    "instagram party dog cat pizza internet phone battery sleep homework deadline"
)
#: Words the generated captions are made of (meme-like English).
CAPTION_WORDS = tuple(_CAPTION_TEXT.split())


@cache
def meme_font_path() -> str:
    """A bold sans-serif TrueType font file (matplotlib's DejaVu Sans Bold)."""
    from matplotlib import font_manager

    return font_manager.findfont(
        font_manager.FontProperties(family="DejaVu Sans", weight="bold"), fallback_to_default=True
    )


def random_caption(rng: np.random.Generator, min_words: int = 2, max_words: int = 7) -> str:
    """A caption of ``min_words``..``max_words`` words from :data:`CAPTION_WORDS`."""
    return " ".join(rng.choice(CAPTION_WORDS, size=int(rng.integers(min_words, max_words + 1))))


def _background(rng: np.random.Generator, size: tuple[int, int], kind: str) -> Image.Image:
    width, height = size
    if kind == "flat":
        return Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3)))
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # smooth colour fields, like out-of-focus photos
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):  # objects: bright and dark ellipses and boxes
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [x0, y0, x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    noise = rng.normal(0, 12, (height, width, 3))  # sensor noise and texture
    pixels = np.clip(np.asarray(image.filter(ImageFilter.GaussianBlur(2)), dtype=np.float64) + noise, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def _wrap(draw: ImageDraw.ImageDraw, words: list[str], font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy wrapping by measured width (a word wider than ``width`` gets a line of its own)."""
    lines: list[str] = []
    for word in words:
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _draw_caption(draw: ImageDraw.ImageDraw, caption: str, size: tuple[int, int], top: bool, scale: float) -> None:
    width, height = size
    words = caption.upper().split()
    font_size = max(10, int(height * scale))
    font = ImageFont.truetype(meme_font_path(), font_size)
    while font_size > 10 and max(draw.textlength(w, font=font) for w in words) > width * 0.94:  # shrink to fit
        font_size -= 2
        font = ImageFont.truetype(meme_font_path(), font_size)
    lines = _wrap(draw, words, font, width * 0.94)
    stroke = max(1, font_size // 12)
    line_height = int(font_size * 1.15)
    y = int(height * 0.03) if top else height - int(height * 0.03) - line_height * len(lines)
    for line in lines:
        line_width = draw.textlength(line, font=font)
        draw.text(
            ((width - line_width) / 2, y), line, font=font, fill="white", stroke_width=stroke, stroke_fill="black"
        )
        y += line_height


def render_meme(
    top: str = "",
    bottom: str = "",
    *,
    size: tuple[int, int] = (480, 480),
    background: str = "photo",
    text_scale: float = 0.085,
    seed: int = 0,
) -> Image.Image:
    """An image macro: ``top`` and ``bottom`` captions in white capitals with a black outline.

    Args:
        top: The top caption ("" for none).
        bottom: The bottom caption ("" for none).
        size: ``(width, height)`` in pixels.
        background: ``"photo"`` (smooth colour fields, shapes and noise) or ``"flat"`` (one random colour).
        text_scale: Font size as a fraction of the image height (0.085: about 41 px at 480 px).
        seed: Seed of the background.
    """
    if background not in ("photo", "flat"):
        raise ValueError(f"background must be 'photo' or 'flat', got {background!r}")
    rng = np.random.default_rng(seed)
    image = _background(rng, size, background)
    draw = ImageDraw.Draw(image)
    if top:
        _draw_caption(draw, top, size, top=True, scale=text_scale)
    if bottom:
        _draw_caption(draw, bottom, size, top=False, scale=text_scale)
    return image
