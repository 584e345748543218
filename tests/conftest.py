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

import torch

from hf_memotion.data import make_demo_data
from hf_memotion.ensemble import MemotionEnsembleConfig, MemotionEnsembleModel, fit_stackers
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.models.vision import MemotionImageProcessor, MemotionVisionConfig, MemotionVisionForImageClassification
from hf_memotion.tasks import PROBLEM_NAMES, get_problem

TRAIN_HEADER = [
    "",
    "image_name",
    "text_ocr",
    "text_corrected",
    "humour",
    "sarcasm",
    "offensive",
    "motivational",
    "overall_sentiment",
]


@pytest.fixture(scope="session")
def ocr():
    """Tesseract's version; skips without Tesseract (fails instead with HF_MEMOTION_REQUIRE_OCR=1, as CI sets)."""
    from hf_memotion.data.ocr import OCRUnavailableError, check_ocr_available

    try:
        return check_ocr_available()
    except OCRUnavailableError as err:
        if os.environ.get("HF_MEMOTION_REQUIRE_OCR") == "1":
            pytest.fail(str(err))
        pytest.skip(f"{err} (set HF_MEMOTION_REQUIRE_OCR=1 to fail instead)")


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


# A tiny random modality ensemble (text + vision, stacked on synthetic out-of-fold probabilities) ----------

N = 120


def _probabilities(rng, labels, n_classes, accuracy):
    noisy = np.where(rng.random(len(labels)) < accuracy, labels, rng.integers(0, n_classes, len(labels)))
    return np.eye(n_classes)[noisy] * 0.7 + 0.3 / n_classes


@pytest.fixture(scope="session")
def synthetic():
    rng = np.random.default_rng(0)
    labels = {p: rng.integers(0, get_problem(p).num_labels, N) for p in PROBLEM_NAMES}
    oof = {
        "text": {p: _probabilities(rng, y, get_problem(p).num_labels, 0.7) for p, y in labels.items()},
        "vision": {p: _probabilities(rng, y, get_problem(p).num_labels, 0.6) for p, y in labels.items()},
    }
    return oof, labels


def build_tiny_ensemble(synthetic, methods=("logistic_regression", "decision_tree", "average")):
    oof, labels = synthetic
    torch.manual_seed(0)
    backbone, tokenizer = build_tiny_text_backbone(
        "bert", ["when the exam is on monday", "lol nice"], hidden_size=16, num_layers=1
    )
    text_config = MemotionTextConfig(
        text_config=backbone, problems=list(PROBLEM_NAMES), lstm_hidden_size=8, attention_size=8, ffn_size=8
    )
    text = MemotionTextForSequenceClassification(text_config).eval()
    vision = MemotionVisionForImageClassification(
        MemotionVisionConfig(architecture="test_resnet", problems=list(PROBLEM_NAMES))
    ).eval()
    processor = MemotionImageProcessor.from_timm("test_resnet", crop_size=32)
    candidates = {p: [methods[i % len(methods)]] for i, p in enumerate(PROBLEM_NAMES)}
    stackers = fit_stackers(oof, labels, candidates=candidates)
    config = MemotionEnsembleConfig(
        problems=list(PROBLEM_NAMES),
        base_models=[
            {"name": "text", "family": "text", "path": "text", "problems": list(PROBLEM_NAMES)},
            {"name": "vision", "family": "vision", "path": "vision", "problems": list(PROBLEM_NAMES)},
        ],
    )
    return MemotionEnsembleModel(
        config, base_models={"text": (text, tokenizer), "vision": (vision, processor)}, stackers=stackers
    )


@pytest.fixture(scope="session")
def saved_ensemble(synthetic, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensemble") / "ensemble"
    build_tiny_ensemble(synthetic).save_pretrained(folder)
    return folder


@pytest.fixture
def online_process(monkeypatch):
    """This process as if HF_HUB_OFFLINE had never been set (restored after the test)."""
    import huggingface_hub

    from hf_memotion.hub import connectivity

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *connectivity._PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(connectivity, "_CHECKED", {})
    yield monkeypatch
    os.environ["HF_HUB_OFFLINE"] = "1"  # what this file set for the rest of the session
