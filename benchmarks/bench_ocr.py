#!/usr/bin/env python
"""Measure how well each image preparation lets Tesseract read meme captions (word accuracy and time).

Usage:
    python benchmarks/bench_ocr.py [--memes 40] [--seed 0] [--output bench_ocr.json]

The memes are rendered (:func:`hf_memotion.data.meme_rendering.render_meme`): white outlined capitals,
top and bottom captions of 2-7 words, on photo-like backgrounds and flat colours, at 250-640 pixels. Word
accuracy is the share of each caption's words found in order (:func:`hf_memotion.data.ocr.word_accuracy`),
averaged over memes; ``worst`` is the lowest single meme's. ``hf-memotion`` is what the pipeline runs
(:func:`hf_memotion.data.ocr.read_meme_text`): the caption mask read as sparse text, the grey image as a
fallback.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memes", type=int, default=40, help="rendered memes to read (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.memes < 1:
        parser.error("--memes must be at least 1")

    from hf_memotion.data.meme_rendering import random_caption, render_meme
    from hf_memotion.data.ocr import (
        OCRUnavailableError,
        caption_mask,
        check_ocr_available,
        read_meme_text,
        run_tesseract,
        upscale_for_reading,
        word_accuracy,
    )

    try:
        version = check_ocr_available()
    except OCRUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    sizes = [(480, 480), (320, 320), (640, 480), (250, 250)]
    memes = []
    for i in range(args.memes):
        top, bottom = random_caption(rng), random_caption(rng)
        background = "flat" if i % 3 == 0 else "photo"
        image = render_meme(top, bottom, size=sizes[i % len(sizes)], background=background, seed=args.seed * 1000 + i)
        memes.append((image, f"{top} {bottom}"))

    def tesseract(prepare, psm):
        def read(image):
            return run_tesseract(prepare(image), psm, timeout=60)  # every method as read_meme_text runs Tesseract

        return read

    methods = {
        "raw colour, block (psm 6)": tesseract(lambda im: im, 6),
        "grey, block (psm 6)": tesseract(lambda im: im.convert("L"), 6),
        "grey upscaled, block (psm 6)": tesseract(lambda im: upscale_for_reading(im.convert("L")), 6),
        "grey upscaled, sparse (psm 11)": tesseract(lambda im: upscale_for_reading(im.convert("L")), 11),
        "caption mask, auto (psm 3)": tesseract(caption_mask, 3),
        "caption mask, sparse (psm 11)": tesseract(caption_mask, 11),
        "hf-memotion read_meme_text": read_meme_text,
    }
    results = {}
    print(f"Tesseract {version}; {len(memes)} rendered memes\n")
    print(f"{'method':34s} {'word accuracy':>13s} {'worst':>6s} {'s/meme':>7s}")
    for name, read in methods.items():
        scores, start = [], time.perf_counter()
        for image, caption in memes:
            scores.append(word_accuracy(caption, read(image)))
        seconds = (time.perf_counter() - start) / len(memes)
        results[name] = {"word_accuracy": statistics.fmean(scores), "worst": min(scores), "seconds_per_meme": seconds}
        print(f"{name:34s} {results[name]['word_accuracy']:13.3f} {min(scores):6.2f} {seconds:7.2f}")
    baseline = results["grey, block (psm 6)"]["word_accuracy"]
    ours = results["hf-memotion read_meme_text"]["word_accuracy"]
    print(f"\nhf-memotion / grey image: {ours / max(baseline, 1e-9):.2f}x the word accuracy")
    if args.output:
        from hf_memotion.io_utils import atomic_write_text

        report = {
            "tesseract": version,
            "memes": len(memes),
            "seed": args.seed,
            "machine": platform.processor() or platform.machine(),
            "results": results,
        }
        atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
