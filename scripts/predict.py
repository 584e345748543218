#!/usr/bin/env python
"""Predict memes with a saved ensemble through ``pipeline("meme-emotion")``.

Usage:
    python scripts/predict.py ENSEMBLE [--image PATH [--text TEXT]] [--no-ten-crop] [--dtype auto|float32|bfloat16]
--image without --text reads the text off the image (OCR, needs Tesseract); with neither, the first meme of the
demo test release is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hf_memotion import meme_emotion_pipeline
from hf_memotion.hardware import resolve_device
from hf_memotion.logs import configure_logging
from hf_memotion.pipelines import MemeInputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ensemble folder or Hub id")
    parser.add_argument("--image", help="meme image file")
    parser.add_argument("--text", help="the meme's text")
    parser.add_argument("--no-ten-crop", action="store_true", help="one centre crop instead of ten")
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="auto: bf16 where native, the ensemble's held-out check passed and bf16 is faster there, else fp32",
    )
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    configure_logging()
    image, text = args.image, args.text
    if text is not None and image is None:
        sys.exit("error: --text needs --image (the meme's picture); --image alone reads the text off the image")
    if image is None:
        demo = Path("outputs/demo_data/memotion_test_release")
        if not (demo / "2000_testdata.csv").is_file():
            sys.exit("error: pass --image and --text (no demo test release in outputs/demo_data)")
        import csv

        with open(demo / "2000_testdata.csv", encoding="utf-8") as handle:
            row = next(csv.DictReader(handle))
        image, text = str(demo / "2000_data" / row["Image_name"]), row["corrected_text"] or row["OCR_extracted_text"]
    try:
        # the folder (or Hub snapshot) checked before anything in it is parsed
        pipe = meme_emotion_pipeline(args.model, dtype=args.dtype, device=resolve_device(args.device))
        meme = {"image": image} if text is None else {"image": image, "text": text}  # no text: OCR
        result = pipe(meme, ten_crop=not args.no_ten_crop)
    except (MemeInputError, FileNotFoundError, OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(
        f"meme: {image}  text: {result['text']!r} ({result['text_source']})  device: {pipe.model.device}  "
        f"dtype: {pipe.model.dtype} "
        f"({pipe.model.inference_dtype_reason})"
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
