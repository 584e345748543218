"""The one place that decodes untrusted images (release files, Hub rows, user uploads).

Pillow decodes lazily, so a truncated file only fails at ``load()``; this module forces the
decode inside its own ``try`` and turns every failure into an :class:`ImageDecodeError` that
names the source. It also normalises what models expect: EXIF orientation applied, the first
frame of an animation, alpha composited onto a white background (memes are drawn on white), and
any mode (CMYK, P, L, I;16, ...) converted to RGB.

Examples:
    >>> from PIL import Image
    >>> from hf_memotion.data.images import load_rgb_image
    >>> load_rgb_image(Image.new("RGBA", (4, 4), (255, 0, 0, 0))).getpixel((0, 0))
    (255, 255, 255)
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "MAX_ASPECT_RATIO",
    "ImageDecodeError",
    "describe_source",
    "load_rgb_image",
]

#: Pillow formats decoded by default: rasters Pillow decodes itself. Formats that hand the bytes to an external
#: program (EPS: Ghostscript) are never decoded, even when asked for.
DEFAULT_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
#: Formats refused whatever ``formats`` says: Pillow runs an external program on them.
EXTERNAL_PROGRAM_FORMATS = ("EPS",)
#: Rows converted at a time from 16-bit or float pixels (bounds the temporary float32 copy to a few MB).
_ROWS_PER_BLOCK = 256

#: Largest image accepted, in pixels (width x height). Larger images are refused as possible
#: decompression bombs. 8192 x 8192 covers every meme in the Memotion release many times over.
DEFAULT_MAX_PIXELS = 8192 * 8192
#: Longest side over shortest side accepted. The processors scale the *short* side to the network's input, so a
#: thin strip (100000 x 1: a few hundred bytes of PNG) would resize to gigabytes; 1:40 is far beyond any meme
#: (the widest Memotion images are about 1:5) and bounds a resized image to 40 x its short side squared.
MAX_ASPECT_RATIO = 40


class ImageDecodeError(ValueError):
    """An image could not be read; the message names the source and the reason."""


def describe_source(source: Any) -> str:
    """A short human-readable name for an image source, for error messages."""
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, dict):
        return str(source.get("path") or "<image bytes>")
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return f"<{type(source).__name__}>"


def _open(source: Any, formats: Sequence[str]) -> Image.Image:
    if isinstance(source, Image.Image):
        if source.format in EXTERNAL_PROGRAM_FORMATS:  # opened elsewhere, not yet decoded by an external program
            raise ImageDecodeError(f"{source.format} images are decoded by an external program: refused")
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, dict):  # datasets' Image(decode=False) storage: {"bytes": ..., "path": ...}
        if source.get("bytes") is not None:
            return Image.open(io.BytesIO(source["bytes"]), formats=formats)
        if source.get("path"):
            return Image.open(_regular_file(os.fspath(source["path"])), formats=formats)
        raise ImageDecodeError("image entry has neither bytes nor a path")
    if isinstance(source, bytes | bytearray):
        return Image.open(io.BytesIO(bytes(source)), formats=formats)
    if isinstance(source, str | os.PathLike):
        return Image.open(_regular_file(os.fspath(source)), formats=formats)
    raise ImageDecodeError(
        f"unsupported image type {type(source).__name__}; pass a file path, bytes, a PIL image or an HxWxC uint8 array"
    )


def _regular_file(path: str) -> str:
    """The path of a non-empty regular file; FIFOs and devices are refused before opening (they could block)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageDecodeError(f"image file not found: {path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError(f"image {path} is not a regular file (a folder, FIFO or device): refused")
    if info.st_size == 0:
        raise ImageDecodeError(f"image file is empty: {path}")
    return path


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # CHW -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageDecodeError(f"array of shape {array.shape} is not an image; expected HxW, HxWx3 or HxWx4")
    if array.dtype.kind not in "buif":
        raise ImageDecodeError(f"array of dtype {array.dtype} is not an image; pass uint8 (or float in [0, 1]) pixels")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def load_rgb_image(
    source: Any,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Decode an image completely and return it as an RGB ``PIL.Image``.

    Args:
        source: A file path, raw bytes, a ``{"bytes", "path"}`` dict (datasets' storage), a PIL
            image, or a ``HxW``/``HxWxC`` array (uint8, or float in [0, 1]).
        max_pixels: Refuse images with more pixels than this (decompression bombs). ``None``
            keeps Pillow's own limit.
        formats: Pillow format names to decode (e.g. ``["JPEG", "PNG"]`` for uploads); ``None``:
            :data:`DEFAULT_FORMATS`. Formats that start an external program (EPS) are refused whatever is asked.
        background: Colour that transparent pixels are composited onto.

    Returns:
        A fully loaded RGB image (frame 0 of an animation, EXIF orientation applied).

    Raises:
        ImageDecodeError: If the source is missing, empty, not a regular file, truncated, corrupt, too large,
            without pixels, thinner than 1:``MAX_ASPECT_RATIO``, of a refused format or of an unsupported type.
            The message names the source and, where it is known, its size. All of it is checked from the header,
            before the pixels are decoded.
    """
    name = describe_source(source)
    formats = tuple(DEFAULT_FORMATS if formats is None else (f.upper() for f in formats))
    refused = sorted(set(formats) & set(EXTERNAL_PROGRAM_FORMATS))
    if refused:
        raise ValueError(f"formats {refused} make Pillow run an external program on untrusted bytes: not decoded")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(source, formats)
            width, height = image.size
            if min(width, height) < 1:
                raise ImageDecodeError(f"image {name} is {width}x{height}: it has no pixels")
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                raise ImageDecodeError(
                    f"image {name} is {width}x{height}, longer than {MAX_ASPECT_RATIO}:1; resizing it for a network "
                    "would take memory out of proportion to the file: crop it first"
                )
            if max_pixels is not None and width * height > max_pixels:
                raise ImageDecodeError(
                    f"image {name} is {width}x{height} = {width * height} pixels, more than the limit of "
                    f"{max_pixels}; resize it first or raise max_pixels if you trust the file"
                )
            if getattr(image, "is_animated", False):
                image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image, background)
    except ImageDecodeError as err:
        if name in str(err):
            raise
        raise ImageDecodeError(f"cannot read image {name}: {err}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(f"image {name} refused as a possible decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name} is not a readable image (accepted formats: {', '.join(formats)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as err:
        raise ImageDecodeError(f"cannot decode image {name}: {err}") from None


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _wide_to_rgb(image)
    return image.convert("RGB")


def _wide_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grey images to RGB, scaled to 0..255, in blocks of rows (no float64 copy).

    Integers above 255 are scaled by the image's peak; floats up to 1.0 are taken as 0..1.
    """
    array = np.asarray(image)  # the image's own width: 2 or 4 bytes a pixel
    peak = float(np.nanmax(array)) if array.size else 0.0
    scale = 1.0
    if array.dtype.kind == "f" and peak <= 1.0:
        scale = 255.0
    elif array.dtype.kind != "f" and peak > 255:
        scale = 255.0 / peak
    grey = np.empty(array.shape, dtype=np.uint8)
    for start in range(0, array.shape[0], _ROWS_PER_BLOCK):
        block = array[start : start + _ROWS_PER_BLOCK].astype(np.float32) * np.float32(scale)
        np.nan_to_num(block, copy=False)
        np.clip(block, 0, 255, out=block)
        grey[start : start + _ROWS_PER_BLOCK] = block
    return Image.fromarray(grey).convert("RGB")
