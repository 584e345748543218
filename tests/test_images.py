import io

import numpy as np
import pytest
from PIL import Image

from hf_memotion.data.images import ImageDecodeError, load_rgb_image


def _png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kwargs.pop("format", "PNG"), **kwargs)
    return buffer.getvalue()


def test_missing_empty_truncated_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="not found: .*nope.jpg"):
        load_rgb_image(tmp_path / "nope.jpg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty: .*empty.png"):
        load_rgb_image(empty)
    data = _png_bytes(Image.new("RGB", (64, 64), (1, 2, 3)), format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated.jpg"):
        load_rgb_image(truncated)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageDecodeError, match="corrupt.png is not a readable image"):
        load_rgb_image(corrupt)


def test_decompression_bomb_is_refused_without_decoding():
    big = _png_bytes(Image.new("1", (20000, 20000)))  # 400 Mpx of 1-bit pixels: a small file
    with pytest.raises(ImageDecodeError, match="pixels, more than the limit|decompression bomb"):
        load_rgb_image(big)
    with pytest.raises(ImageDecodeError, match="more than the limit of 100"):
        load_rgb_image(Image.new("RGB", (11, 10)), max_pixels=100)


def test_modes_are_converted_to_rgb():
    cmyk = load_rgb_image(_png_bytes(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), format="JPEG"))
    assert cmyk.mode == "RGB"
    assert cmyk.getpixel((0, 0))[0] > 200 and cmyk.getpixel((0, 0))[1] < 60  # red
    rgba = load_rgb_image(_png_bytes(Image.new("RGBA", (4, 4), (0, 0, 0, 0))))
    assert rgba.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white background, not black
    half = load_rgb_image(Image.new("RGBA", (2, 2), (0, 0, 0, 128)))
    assert 120 <= half.getpixel((0, 0))[0] <= 135
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    assert load_rgb_image(_png_bytes(palette)).getpixel((0, 0)) == (200, 10, 10)
    palette.info["transparency"] = 1
    assert load_rgb_image(_png_bytes(palette, transparency=1)).getpixel((0, 0)) == (255, 255, 255)
    grey16 = Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    assert load_rgb_image(grey16).getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb_image(Image.new("LA", (2, 2), (50, 255))).getpixel((0, 0)) == (50, 50, 50)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    image = load_rgb_image(buffer.getvalue())
    assert image.mode == "RGB" and image.getpixel((0, 0))[0] > 200


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (6, 2), (0, 200, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    loaded = load_rgb_image(_png_bytes(image, format="JPEG", exif=exif.tobytes()))
    assert loaded.size == (2, 6)


def test_arrays_and_dicts_and_format_restriction(tmp_path):
    assert load_rgb_image(np.zeros((5, 6, 3), dtype=np.uint8)).size == (6, 5)
    assert load_rgb_image(np.ones((3, 5, 6), dtype=np.float32)).getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb_image({"bytes": _png_bytes(Image.new("RGB", (3, 3))), "path": "x.png"}).size == (3, 3)
    with pytest.raises(ImageDecodeError, match="not an image"):
        load_rgb_image(np.zeros((2, 3, 7)))
    with pytest.raises(ImageDecodeError, match="unsupported image type int"):
        load_rgb_image(3)
    bmp = _png_bytes(Image.new("RGB", (3, 3)), format="BMP")
    with pytest.raises(ImageDecodeError, match="accepted formats: JPEG, PNG"):
        load_rgb_image(bmp, formats=["JPEG", "PNG"])
