"""Fuzz-style: a few hundred generated malformed CSV rows, images and model folders; no raw library exception.

Every input must either load (a correct result) or fail with one of the project's own errors (or a ValueError /
TypeError / OSError whose message names the input), never an exception type from inside pandas, Pillow,
safetensors, skops, numpy or transformers.
"""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from PIL import Image

import hf_memotion  # noqa: F401
from conftest import TRAIN_HEADER, write_csv, write_image
from hf_memotion.data import ImageDecodeError, MemotionFormatError, load_memotion
from hf_memotion.data.images import load_rgb_image
from hf_memotion.folder_safety import UnsafeModelFolderError

#: What a caller may see: our errors, or the builtin ones with a message about the input.
ALLOWED = (MemotionFormatError, ImageDecodeError, UnsafeModelFolderError, ValueError, TypeError, FileNotFoundError)


def _assert_ours(err: BaseException, what: str) -> None:
    module = type(err).__module__
    assert isinstance(err, ALLOWED), f"{what}: {type(err).__module__}.{type(err).__name__}: {err}"
    assert module in ("builtins", "hf_memotion") or module.startswith("hf_memotion."), f"{what}: {module}"
    assert str(err).strip(), f"{what}: an empty message"


_CELLS = [
    "",
    " ",
    "funny",
    "hilarious",
    "very_twisted",
    "0",
    "-1",
    "nan",
    "None",
    "\u00e9\u00e8",
    "\U0001f600",
    "a,b",
    '"',
    "\n",
    "x" * 300,
    "../x.png",
    "/etc/passwd",
    "image_1.jpg",
    "IMAGE_1.JPG",
    "\\\\server\\x",
]


@pytest.mark.parametrize("seed", range(60))
def test_malformed_release_rows(tmp_path, seed):
    rng = random.Random(seed)
    root = tmp_path / "memotion_dataset_7k"
    write_image(root / "images" / "image_1.jpg")
    rows = []
    for i in range(rng.randint(1, 6)):
        row = [str(i)] + [rng.choice(_CELLS) for _ in TRAIN_HEADER[1:]]
        if rng.random() < 0.3:
            row = row[: rng.randint(1, len(row))]  # short rows
        rows.append(row)
    header = list(TRAIN_HEADER)
    if rng.random() < 0.2:
        header.remove(rng.choice(header[1:]))
    write_csv(root / "labels.csv", header, rows)
    if rng.random() < 0.2:  # a stray byte
        data = bytearray((root / "labels.csv").read_bytes())
        data[rng.randrange(len(data))] = 0xFF
        (root / "labels.csv").write_bytes(bytes(data))
    try:
        load_memotion(root, on_error=rng.choice(["raise", "skip"]), verify_images=rng.random() < 0.5)
    except Exception as err:
        _assert_ours(err, f"rows {rows}")


def _image_bytes(rng: random.Random) -> bytes:
    width, height = rng.choice([(1, 1), (3, 200), (200, 3), (64, 48), (0, 0), (5000, 2)])
    if width == 0:
        return b""
    buffer = io.BytesIO()
    modes = {
        "PNG": ["RGB", "L", "RGBA", "P", "I;16"],
        "JPEG": ["RGB", "L", "CMYK"],
        "GIF": ["L", "P"],
        "BMP": ["RGB", "L", "P"],
        "WEBP": ["RGB", "RGBA"],
    }
    fmt = rng.choice(sorted(modes))
    Image.new(rng.choice(modes[fmt]), (width, height)).save(buffer, format=fmt)
    data = bytearray(buffer.getvalue())
    damage = rng.random()
    if damage < 0.3:
        del data[rng.randrange(1, len(data)) :]  # truncated
    elif damage < 0.5:
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


@pytest.mark.parametrize("seed", range(200))
def test_malformed_images(seed):
    rng = random.Random(1000 + seed)
    source = _image_bytes(rng)
    kind = rng.random()
    if kind < 0.2:
        source = {"bytes": source, "path": None}
    elif kind < 0.3:
        source = np.frombuffer(source or b"\x00", dtype=np.uint8).reshape(-1)
    try:
        image = load_rgb_image(source)
    except Exception as err:
        _assert_ours(err, f"image seed {seed}")
    else:
        assert image.mode == "RGB" and min(image.size) >= 1


def _folder_edits(rng: random.Random):
    def drop_key(config):
        config.pop(rng.choice(sorted(config)), None)

    def wrong_type(config):
        config[rng.choice(["architecture", "problems", "model_args", "problem_labels", "class_weights"])] = rng.choice(
            [5, None, "x", [], {"a": 1}, [["x"]]]
        )

    def hostile_args(config):
        choices = [
            {"pretrained": True},
            {"checkpoint_path": "/x.pth"},
            {"pretrained_cfg_overlay": {"url": "http://x/y"}},
            {"not_an_arg": 1},
        ]
        config["model_args"] = rng.choice(choices)

    def labels(config):
        config["id2label"] = rng.choice([{"0": "a"}, {"0": "a", "1": "b", "2": "c", "9": "z"}, {}])

    return [drop_key, wrong_type, hostile_args, labels]


@pytest.mark.parametrize("seed", range(40))
def test_malformed_model_folders(tmp_path, seed):
    from transformers import AutoModelForImageClassification

    from hf_memotion.models.vision import MemotionVisionConfig, MemotionVisionForImageClassification

    rng = random.Random(5000 + seed)
    folder = tmp_path / "model"
    MemotionVisionForImageClassification(MemotionVisionConfig(architecture="test_resnet")).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    for edit in rng.sample(_folder_edits(rng), rng.randint(1, 2)):
        edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    if rng.random() < 0.3:
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: rng.randint(0, 200)])
    try:
        AutoModelForImageClassification.from_pretrained(folder)
    except Exception as err:
        if type(err).__module__.startswith(("transformers", "huggingface_hub")) and isinstance(err, ValueError):
            return  # transformers' own config validation: a ValueError naming the field, not a crash
        if "ignore_mismatched_sizes" in str(err):
            return  # heads of another size than the weights: transformers' documented refusal (its load report)
        _assert_ours(err, f"config {config}")
