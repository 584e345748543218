#!/usr/bin/env python
"""Measure what hostile images cost: decode memory, caption-mask memory, OCR time, and another user's wait.

Usage:
    python benchmarks/bench_hostile_inputs.py [--side 8192] [--output bench_hostile.json]

Each memory figure is the rise of peak resident memory (``VmHWM``) of a fresh process over what it held before,
reported against the decoded RGB image it produces (``side * side * 3`` bytes, the baseline of the same run): a
decoder in proportion to the pixels stays within a small multiple of it. The OCR figures read a 2,000-pixel image
of random black and white pixels (on which Tesseract searches for words for seconds) with a limit of
``--ocr-timeout`` seconds, while a second thread reads a rendered meme: its time is the wait another Space user
would see.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import subprocess
import sys
import threading
import time

CHILD = """
import io, json, sys
import numpy as np
from PIL import Image
from hf_memotion.benchmarking import peak_rss_bytes
from hf_memotion.data.images import load_rgb_image
from hf_memotion.data.ocr import caption_mask
kind, side = sys.argv[1], int(sys.argv[2])
if kind == "decode_16_bit":
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((side, side), dtype=np.uint16) + 40000).save(buffer, format="PNG")
    data = buffer.getvalue()
    del buffer
    before = peak_rss_bytes()
    image = load_rgb_image(data)
else:
    image = Image.new("RGB", (side, side), (255, 255, 255))
    before = peak_rss_bytes()
    page = caption_mask(image)
print(json.dumps({"rise": peak_rss_bytes() - before, "file_bytes": len(data) if kind == "decode_16_bit" else 0}))
"""


def _memory(kind: str, side: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(side)], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    rgb = side * side * 3
    return {
        "rise_mb": figures["rise"] / 2**20,
        "rgb_image_mb": rgb / 2**20,
        "ratio_to_rgb": figures["rise"] / rgb,
        "file_kb": figures["file_bytes"] / 1024,
    }


def _ocr(timeout: float) -> dict:
    import numpy as np
    from PIL import Image

    from hf_memotion.data.meme_rendering import render_meme
    from hf_memotion.data.ocr import OCRTimeoutError, read_meme_text

    noise = Image.fromarray((np.random.default_rng(0).random((2000, 2000)) > 0.5).astype(np.uint8) * 255)
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    hostile, figures = noise.convert("RGB"), {"hostile_png_kb": len(buffer.getvalue()) / 1024}

    def read_hostile():
        start = time.perf_counter()
        try:
            read_meme_text(hostile, timeout=timeout)
            figures["hostile_outcome"] = "read"
        except OCRTimeoutError:
            figures["hostile_outcome"] = "stopped"
        figures["hostile_s"] = time.perf_counter() - start

    start = time.perf_counter()
    read_meme_text(render_meme("alone", seed=1))
    figures["meme_alone_s"] = time.perf_counter() - start
    thread = threading.Thread(target=read_hostile)
    thread.start()
    time.sleep(0.2)
    start = time.perf_counter()
    read_meme_text(render_meme("another user", seed=2))
    figures["meme_during_hostile_s"] = time.perf_counter() - start
    thread.join()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=8192, help="side of the square images of the memory figures")
    parser.add_argument("--ocr-timeout", type=float, default=5.0, help="Tesseract's limit per read (default 5)")
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    from hf_memotion.data.ocr import OCRUnavailableError, check_ocr_available

    figures = {"machine": platform.processor() or platform.machine(), "side": args.side}
    for kind in ("decode_16_bit", "caption_mask"):
        figures[kind] = _memory(kind, args.side)
        f = figures[kind]
        print(
            f"{kind:>14}: +{f['rise_mb']:.0f} MB for a {args.side}x{args.side} image "
            f"({f['ratio_to_rgb']:.2f}x its {f['rgb_image_mb']:.0f} MB RGB decode)"
        )
    try:
        check_ocr_available()
    except OCRUnavailableError as err:
        print(f"OCR figures skipped: {err}", file=sys.stderr)
    else:
        figures["ocr"] = f = _ocr(args.ocr_timeout)
        print(
            f"{'ocr':>14}: hostile {f['hostile_png_kb']:.0f} kB image {f['hostile_outcome']} after "
            f"{f['hostile_s']:.1f} s (limit {args.ocr_timeout:g} s per read); another meme took "
            f"{f['meme_during_hostile_s']:.2f} s meanwhile, {f['meme_alone_s']:.2f} s alone"
        )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
