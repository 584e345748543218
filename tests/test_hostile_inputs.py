"""Hostile and careless inputs (issue 15): each is refused with an error naming it, nothing fetched or read outside.

Fixtures are made here: saved folders edited the way an attacker would, FIFOs, symlinks, rogue skops files.
"""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import skops.io as sio
from transformers import AutoModel, AutoModelForImageClassification

import hf_memotion  # noqa: F401
from conftest import build_tiny_ensemble
from hf_memotion.ensemble import MemotionEnsembleModel
from hf_memotion.ensemble.stacking import ESTIMATORS, TRUSTED_TYPES, estimator_file_types, load_estimator
from hf_memotion.folder_safety import UnsafeModelFolderError, check_folder_is_safe, read_bounded, resolve_inside
from hf_memotion.models.vise import ViseConfig, ViseModel
from hf_memotion.models.vision import MemotionVisionConfig, MemotionVisionForImageClassification


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection fails the test: loading a folder must not reach the network."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("family", ["vision", "vise"])
@pytest.mark.parametrize(
    "model_args",
    [
        {"pretrained": True, "pretrained_cfg_overlay": {"url": "http://attacker.example/w.pth"}},
        {"pretrained_cfg_overlay": {"file": "/etc/passwd"}},
        {"checkpoint_path": "/tmp/other.safetensors"},
        {"drop_rate": 0.0, "extra": {"hidden": "https://attacker.example/x"}},
    ],
    ids=["pretrained-url", "overlay-file", "checkpoint", "nested-url"],
)
def test_a_folder_cannot_make_loading_download_or_read_weights(tmp_path, no_network, family, model_args):
    if family == "vision":
        model = MemotionVisionForImageClassification(MemotionVisionConfig(architecture="test_resnet"))
    else:
        model = ViseModel(ViseConfig(architecture="test_resnet"))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_args"] = model_args
    (tmp_path / "config.json").write_text(json.dumps(config))
    loader = AutoModelForImageClassification if family == "vision" else AutoModel
    with pytest.raises(ValueError, match="model_args"):
        loader.from_pretrained(tmp_path)


def test_pretrained_weights_are_asked_for_at_build_time_only():
    with pytest.raises(ValueError, match="from_timm"):
        MemotionVisionConfig(architecture="test_resnet", model_args={"pretrained": True})


def test_folder_check_sees_through_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.pkl").write_bytes(b"not checked before")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeModelFolderError, match="symlinked folders"):
        check_folder_is_safe(folder)
    (folder / "linked").unlink()
    (folder / "weights.safetensors").symlink_to(outside / "evil.pkl")  # a harmless name for a pickle
    with pytest.raises(UnsafeModelFolderError, match="pickle-based"):
        check_folder_is_safe(folder)


@pytest.mark.parametrize("path", ["../elsewhere", "/etc", "~/models", "a/../../b"])
def test_paths_in_a_config_stay_inside_the_folder(tmp_path, path):
    with pytest.raises(UnsafeModelFolderError, match="leaves the folder"):
        resolve_inside(tmp_path, path, "base model path")


def test_fifos_and_devices_are_refused_before_opening(tmp_path):
    fifo = tmp_path / "endless.skops"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeModelFolderError, match="not a regular file"):
        read_bounded(fifo, "meta-estimator file")  # opening a FIFO would block forever
    with pytest.raises(UnsafeModelFolderError, match="not a regular file"):
        read_bounded("/dev/zero", "meta-estimator file")
    big = tmp_path / "big.skops"
    big.write_bytes(b"0" * 2048)
    with pytest.raises(UnsafeModelFolderError, match="2048 bytes"):
        read_bounded(big, "meta-estimator file", max_bytes=1024)


def _saved_ensemble(synthetic, tmp_path):
    folder = tmp_path / "ensemble"
    build_tiny_ensemble(synthetic).save_pretrained(folder)
    return folder, json.loads((folder / "config.json").read_text())


def _rewrite(folder, config):
    (folder / "config.json").write_text(json.dumps(config))


def test_an_ensemble_never_loads_from_outside_its_folder(synthetic, tmp_path):
    folder, config = _saved_ensemble(synthetic, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (folder / config["base_models"][0]["path"]).rename(elsewhere)
    config["base_models"][0]["path"] = "../elsewhere"
    _rewrite(folder, config)
    with pytest.raises(UnsafeModelFolderError, match="leaves the folder"):
        MemotionEnsembleModel.from_pretrained(folder)
    config["base_models"][0]["path"] = str(elsewhere)
    _rewrite(folder, config)
    with pytest.raises(UnsafeModelFolderError, match="leaves the folder"):
        MemotionEnsembleModel.from_pretrained(folder)


def test_a_meta_estimator_file_stays_inside_and_is_bounded(synthetic, tmp_path):
    folder, config = _saved_ensemble(synthetic, tmp_path)
    problem = next(p for p, m in config["meta"].items() if m["file"])
    config["meta"][problem]["file"] = "/dev/zero"
    _rewrite(folder, config)
    with pytest.raises(UnsafeModelFolderError, match="leaves the folder"):
        MemotionEnsembleModel.from_pretrained(folder)
    fifo = folder / "meta" / "fifo.skops"
    os.mkfifo(fifo)
    config["meta"][problem]["file"] = "meta/fifo.skops"
    _rewrite(folder, config)
    with pytest.raises(UnsafeModelFolderError, match="not a regular file"):
        MemotionEnsembleModel.from_pretrained(folder)


def test_a_type_skops_trusts_by_default_is_still_refused(synthetic, tmp_path):
    from sklearn.dummy import DummyClassifier

    folder, config = _saved_ensemble(synthetic, tmp_path)
    problem = next(p for p, m in config["meta"].items() if m["file"])
    constant = DummyClassifier(strategy="constant", constant=0).fit(np.zeros((4, 2)), [0, 1, 0, 1])
    assert not sio.get_untrusted_types(data=sio.dumps(constant))  # skops itself would load it
    (folder / config["meta"][problem]["file"]).write_bytes(sio.dumps(constant))
    with pytest.raises(ValueError, match="DummyClassifier"):
        MemotionEnsembleModel.from_pretrained(folder)
    with pytest.raises(ValueError, match="not a skops estimator file"):
        load_estimator(b"PK\x03\x04 truncated", source="cut.skops")


def test_the_estimators_we_write_use_only_reviewed_types():
    from sklearn.base import clone

    rng = np.random.default_rng(0)
    features, labels = rng.random((60, 6)), rng.integers(0, 3, 60)
    for name, estimator in ESTIMATORS.items():
        data = sio.dumps(clone(estimator).fit(features, labels))
        root, types = estimator_file_types(data)
        assert set(types) <= set(TRUSTED_TYPES), (name, sorted(set(types) - set(TRUSTED_TYPES)))
        assert load_estimator(data).__class__.__name__ == root.rsplit(".", 1)[1]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda meta: meta.update(num_classes=7), "num_classes"),
        (lambda meta: meta.update(model_order=["nobody"]), "model_order"),
        (lambda meta: meta.update(method="magic"), "method must be one of"),
    ],
    ids=["num_classes", "model_order", "method"],
)
def test_a_wrong_ensemble_config_fails_on_loading(synthetic, tmp_path, edit, message):
    folder, config = _saved_ensemble(synthetic, tmp_path)
    edit(next(iter(config["meta"].values())))
    _rewrite(folder, config)
    with pytest.raises(ValueError, match=message):
        MemotionEnsembleModel.from_pretrained(folder)


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_thin_strip_is_refused_before_it_is_decoded_or_resized():
    from hf_memotion.data.images import ImageDecodeError, load_rgb_image

    strip = _png(100_000, 1)
    assert len(strip) < 1000
    with pytest.raises(ImageDecodeError, match=r"100000x1, longer than 40:1"):
        load_rgb_image(strip)
    assert load_rgb_image(_png(400, 20)).size == (400, 20)  # 20:1 is a legitimate banner


def test_images_without_pixels_or_that_could_block_are_refused(tmp_path):
    from hf_memotion.data.images import ImageDecodeError, load_rgb_image

    fifo = tmp_path / "meme.png"
    os.mkfifo(fifo)
    for source in (str(fifo), {"path": str(fifo), "bytes": None}, "/dev/zero", str(tmp_path)):
        with pytest.raises(ImageDecodeError, match="not a regular file"):
            load_rgb_image(source)
    with pytest.raises(ImageDecodeError, match="no pixels"):
        load_rgb_image(np.zeros((0, 0, 3), dtype=np.uint8))


def test_a_huge_crop_size_is_refused_when_the_processor_loads(tmp_path):
    from hf_memotion.models.vision import MemotionImageProcessor

    MemotionImageProcessor(crop_size=64).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    config["crop_size"] = 10**6
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="crop_size must be a number from 8 to 2048"):
        MemotionImageProcessor.from_pretrained(tmp_path)


def test_weights_that_are_not_safetensors_are_one_readable_error(tmp_path):
    model = MemotionVisionForImageClassification(MemotionVisionConfig(architecture="test_resnet"))
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        MemotionVisionForImageClassification.from_pretrained(tmp_path)


def test_a_lone_surrogate_in_a_text_names_the_item():
    from hf_memotion.models.text.preprocessing import normalize_text

    with pytest.raises(ValueError, match=r"meme text at index 3 holds '\\udc80' at character 2"):
        normalize_text("ok\udc80", index=3)


# ----------------------------------------------------------------------------------------------- the data layer

_ROW = ["0", "image_1.jpg", "OCR", "Text", "funny", "general", "slight", "motivational", "positive"]


def _release(tmp_path, rows):
    from conftest import write_train_release

    return write_train_release(tmp_path / "memotion_dataset_7k", rows, images={r[1]: None for r in rows})


@pytest.mark.parametrize("name", ["/etc/hostname", "../labels.csv", "sub/../../x.png", "C:\\x.png", "a/b.png"])
def test_image_names_cannot_leave_the_image_folder(tmp_path, name):
    from conftest import write_image
    from hf_memotion.data import MemotionFormatError, load_memotion

    root = _release(tmp_path, [_ROW, ["1", name, "o", "t", "funny", "general", "slight", "motivational", "positive"]])
    write_image(root / "images" / "image_1.jpg")
    with pytest.raises(MemotionFormatError, match=r"labels.csv: line 3: image_name .* leaves the image folder"):
        load_memotion(root, verify_images=False)
    assert load_memotion(root, verify_images=False, on_error="skip")["train"].num_rows == 1


def test_duplicated_image_names_are_an_error_or_skipped_with_a_count(tmp_path, caplog):
    from conftest import write_image
    from hf_memotion.data import MemotionFormatError, load_memotion

    other = ["1", "image_1.jpg", "o", "t", "not_funny", "general", "slight", "motivational", "negative"]
    root = _release(tmp_path, [_ROW, other])
    write_image(root / "images" / "image_1.jpg")
    with pytest.raises(MemotionFormatError, match="line 2: image_name 'image_1.jpg' is listed more than once"):
        load_memotion(root)
    assert load_memotion(root, on_error="skip")["train"].num_rows == 0
    assert "skipped 2 row(s)" in caplog.text


def test_a_stray_byte_names_the_file_and_line_and_nothing_is_reinterpreted(tmp_path):
    from conftest import write_image
    from hf_memotion.data import MemotionFormatError, load_memotion

    root = _release(
        tmp_path,
        [
            _ROW,
            ["1", "image_2.jpg", "caf\u00e9 \U0001f600", "t", "funny", "general", "slight", "motivational", "positive"],
        ],
    )
    write_image(root / "images" / "image_1.jpg")
    write_image(root / "images" / "image_2.jpg")
    data = (root / "labels.csv").read_bytes().replace(b"OCR", b"OC\xff")
    (root / "labels.csv").write_bytes(data)
    with pytest.raises(MemotionFormatError, match=r"labels.csv line 2: bytes b'\\xff' are not utf-8"):
        load_memotion(root)
    (root / "labels.csv").write_bytes(data.replace(b"OC\xff", b"OCR"))
    train = load_memotion(root)["train"]
    assert train["image_name"] == ["image_1.jpg", "image_2.jpg"]  # the emoji row loads intact, nothing re-read


def test_a_header_only_csv_and_both_releases_in_one_folder(tmp_path):
    from conftest import TRAIN_HEADER, write_csv, write_image
    from hf_memotion.data import MemotionFormatError, load_memotion

    root = tmp_path / "both"
    write_csv(root / "labels.csv", TRAIN_HEADER, [])
    (root / "images").mkdir(parents=True)
    with pytest.raises(MemotionFormatError, match="labels.csv has a header but no rows"):
        load_memotion(root)
    write_csv(root / "labels.csv", TRAIN_HEADER, [_ROW])
    write_image(root / "images" / "image_1.jpg")
    write_image(root / "2000_data" / "t.png", fmt="PNG")
    write_csv(
        root / "2000_testdata.csv",
        ["Image_name", "Image_URL", "OCR_extracted_text", "corrected_text"],
        [["t.png", "u", "o", "c"]],
    )
    assert sorted(load_memotion(root)) == ["test", "train"]


# -------------------------------------------------------------------------------------------------- publishing


def test_publishing_leaves_out_secrets_refuses_symlinks_and_asks_before_large_uploads(tmp_path, monkeypatch):
    from hf_memotion.hub import publishing
    from hf_memotion.hub.publishing import HubPublishError, push_folder, upload_plan

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "README.md", "id_rsa", "credentials.json", "hf_token.txt", "server.pem"):
        (folder / name).write_text("x")
    result = push_folder(folder, "me/model", dry_run=True)
    assert [f.path_in_repo for f in result.files] == ["README.md", "config.json"]
    assert result.left_out == ["credentials.json", "hf_token.txt", "id_rsa", "server.pem"]
    planned = [f.path_in_repo for f in upload_plan(folder, include=["server.pem"])]
    assert planned == ["README.md", "config.json", "server.pem"]
    (folder / "notes.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(HubPublishError, match=r"symlinks \['notes.txt'\]"):
        upload_plan(folder)
    (folder / "notes.txt").unlink()
    monkeypatch.setattr(publishing, "MAX_TOTAL_BYTES", 1)
    with pytest.raises(HubPublishError, match="allow_large=True"):
        upload_plan(folder)
    assert len(upload_plan(folder, allow_large=True)) == 2


# ---------------------------------------------------------------------------------------------------- pipeline


def test_one_bad_meme_does_not_lose_the_others_when_asked(saved_ensemble, tmp_path):
    from transformers import pipeline

    from hf_memotion.pipelines import MemeInputError

    pipe = pipeline("meme-emotion", model=str(saved_ensemble))
    good = {"image": _png(32, 32), "text": "fine"}
    fifo = tmp_path / "blocked.png"
    os.mkfifo(fifo)
    batch = [good, {"image": str(fifo), "text": "x"}, {"image": _png(100_000, 1), "text": "y"}, good]
    with pytest.raises(MemeInputError, match="meme 1: .*not a regular file"):
        pipe(batch)
    out = pipe(batch, errors="return", batch_size=1)
    assert "sentiment" in out[0] and "sentiment" in out[3] and out[0] == out[3]
    assert "not a regular file" in out[1]["error"] and "40:1" in out[2]["error"]


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 0},
        {"batch_size": -2},
        {"batch_size": 2.5},
        {"batch_size": True},
        {"tencrop": False},
        {"errors": "ignore"},
    ],
)
def test_pipeline_arguments_are_checked(saved_ensemble, bad):
    from transformers import pipeline

    pipe = pipeline("meme-emotion", model=str(saved_ensemble))
    with pytest.raises((ValueError, TypeError), match="batch_size|unknown argument|errors must be"):
        pipe({"image": _png(32, 32), "text": "x"}, **bad)
