"""Shared fixtures: small demo data made once per session, and helpers to write release folders."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from hf_memotion.data import make_demo_data

TRAIN_HEADER = ["", "image_name", "text_ocr", "text_corrected", "humour", "sarcasm", "offensive", "motivational",
                "overall_sentiment"]  # fmt: skip


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    return make_demo_data(tmp_path_factory.mktemp("demo") / "data", n_train=60, n_test=20, seed=3)


def write_image(path: Path, colour=(10, 200, 30), fmt: str | None = None, size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), colour, dtype=np.uint8)).save(path, format=fmt)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_train_release(root: Path, rows: list[list[str]], images: dict[str, str] | None = None) -> Path:
    """Write labels.csv (release header, index column) and one image per row.

    ``images`` maps an image_name to the file name actually written (to test extension quirks);
    a value of ``None`` writes no file.
    """
    images = images or {}
    for row in rows:
        name = row[1]
        file_name = images.get(name, name)
        if file_name is not None:
            fmt = {"jpg": "JPEG", "jpeg": "JPEG", "jpe": "JPEG", "png": "PNG", "bmp": "BMP"}[
                file_name.rsplit(".", 1)[1].lower()
            ]
            write_image(root / "images" / file_name, fmt=fmt)
    write_csv(root / "labels.csv", TRAIN_HEADER, rows)
    return root
