"""Nothing the user already has is destroyed, and no folder reaches outside itself: one test per hole.

Writers (export, ``save_pretrained``, the demo generators, runs) into folders that hold the user's files; member
configs that name another library's network or a checkpoint outside; the pipeline's entry; the connectivity check's
log line and its respect for the user's choices; work bounded by what the models saw; numbers in saved configs that
would serve non-probabilities; ONNX external data outside the folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import build_tiny_ensemble
from hf_memotion.ensemble import MemotionEnsembleModel
from hf_memotion.folder_safety import UnsafeModelFolderError
from hf_memotion.io_utils import FolderNotOursError

ROOT = Path(__file__).resolve().parents[1]


def _users_folder(path):
    """A folder of the user's: notes and another model, which no writer may touch."""
    path.mkdir(parents=True)
    (path / "notes.md").write_text("my notes")
    (path / "other_model").mkdir()
    (path / "other_model" / "weights.safetensors").write_bytes(b"not ours")
    return path


def _untouched(path) -> bool:
    return (path / "notes.md").read_text() == "my notes" and (
        path / "other_model" / "weights.safetensors"
    ).read_bytes() == b"not ours"


# --- writers ---------------------------------------------------------------------------------------------------


def test_an_onnx_export_never_writes_over_a_users_folder_and_keeps_files_beside_its_own(synthetic, tmp_path):
    pytest.importorskip("onnxruntime")
    ensemble = build_tiny_ensemble(synthetic)
    users = _users_folder(tmp_path / "outputs")  # `scripts/export_onnx.py ENSEMBLE outputs` would have erased it
    with pytest.raises(FolderNotOursError, match="did not write .*notes.md"):
        ensemble.export_onnx(users)
    assert _untouched(users) and sorted(p.name for p in users.iterdir()) == ["notes.md", "other_model"]
    exported = tmp_path / "onnx"
    ensemble.export_onnx(exported)
    (exported / "notes.md").write_text("my notes")  # a note beside an export of ours
    ensemble.export_onnx(exported)  # exported again: its own files replaced, the note kept
    assert (exported / "notes.md").read_text() == "my notes" and (exported / "config.json").is_file()
    onnx = MemotionEnsembleModel.from_pretrained(exported)
    with pytest.raises(FolderNotOursError, match="did not write"):
        onnx.save_pretrained(users)  # OnnxMemotionEnsemble.save_pretrained
    assert _untouched(users)


def test_an_ensemble_save_never_writes_over_a_users_folder(synthetic, tmp_path):
    ensemble = build_tiny_ensemble(synthetic)
    users = _users_folder(tmp_path / "mine")
    with pytest.raises(FolderNotOursError, match="did not write"):
        ensemble.save_pretrained(users)
    assert _untouched(users)
    ours = tmp_path / "ensemble"
    ensemble.save_pretrained(ours)
    (ours / "notes.md").write_text("my notes")
    ensemble.save_pretrained(ours)  # saved again: the note beside stays
    assert (ours / "notes.md").read_text() == "my notes"
    assert MemotionEnsembleModel.from_pretrained(ours).config.problems == ensemble.config.problems
    (ours / "text" / "x").mkdir()  # a member folder holds more than the save writes: still ours (its folder)
    ensemble.save_pretrained(ours)


def test_a_models_save_never_overwrites_a_card_config_or_weights_of_someone_else(tmp_path):
    from hf_memotion import MemotionVisionConfig, MemotionVisionForImageClassification

    model = MemotionVisionForImageClassification(MemotionVisionConfig(architecture="test_resnet", problems=["humour"]))
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("# my project")
    with pytest.raises(FolderNotOursError, match="holds README.md and no saved memotion_vision model"):
        model.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# my project" and not (folder / "config.json").exists()
    trainer_dir = tmp_path / "trainer"  # a Trainer's output_dir: checkpoints beside the final save
    (trainer_dir / "checkpoint-10").mkdir(parents=True)
    model.save_pretrained(trainer_dir)
    model.save_pretrained(trainer_dir)  # a saved memotion_vision model: saved again over itself
    assert (trainer_dir / "checkpoint-10").is_dir() and (trainer_dir / "model.safetensors").is_file()


def test_the_demo_generators_never_delete_a_users_folder_and_keep_files_beside_theirs(tmp_path):
    from hf_memotion.data import make_demo_data
    from hf_memotion.data.downstream_demo import make_demo_downstream

    users = _users_folder(tmp_path / "data")
    with pytest.raises(FolderNotOursError, match="did not write"):
        make_demo_data(users, overwrite=True, n_train=8, n_test=2)  # overwrite=True deleted it before
    assert _untouched(users)
    demo = make_demo_data(tmp_path / "demo", n_train=8, n_test=2)
    (demo / "notes.md").write_text("my notes")
    make_demo_data(demo, overwrite=True, n_train=9, n_test=2)
    assert (demo / "notes.md").read_text() == "my notes"
    assert len((demo / "memotion_dataset_7k" / "labels.csv").read_text().splitlines()) == 10
    task = make_demo_downstream(tmp_path / "task", "image_folder", n_per_class=2, image_size=16)
    (task / "notes.md").write_text("my notes")
    make_demo_downstream(task, "cub", n_per_class=2, image_size=16)  # another demo task: rewritten
    assert (task / "notes.md").read_text() == "my notes" and (task / "images.txt").is_file()
    with pytest.raises(FolderNotOursError, match="did not write"):
        make_demo_downstream(users, "image_folder", n_per_class=2, image_size=16)
    assert _untouched(users)


def test_runs_never_write_into_a_folder_that_is_not_a_run(tmp_path):
    from hf_memotion.recipe.ensemble_recipe import run_training
    from hf_memotion.specs import load_run_config
    from hf_memotion.vise.mining import mine_labels

    users = _users_folder(tmp_path / "home")
    demo = str(ROOT / "configs" / "demo.yaml")
    config = load_run_config(demo, [f"output_dir={users}", f"data.demo.output_dir={tmp_path / 'd'}"])
    with pytest.raises(FolderNotOursError, match="is not an ensemble training run's folder"):
        run_training(config)
    with pytest.raises(FolderNotOursError, match="is not a mining run's folder"):
        mine_labels(tmp_path / "no_corpus", users)
    assert _untouched(users) and not (tmp_path / "d").exists()


# --- member configs ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_timm_build(monkeypatch):
    """Building any timm network fails the test: a refused folder must never get that far."""
    import timm

    def refuse(*args, **kwargs):
        raise AssertionError(f"timm.create_model{args} was called on a folder that should have been refused")

    monkeypatch.setattr(timm, "create_model", refuse)
    monkeypatch.setattr(timm.models, "create_model", refuse, raising=False)


def _timm_wrapper(outside_checkpoint, architecture="resnet18") -> dict:
    """transformers' own TimmWrapperConfig layout (as ``TimmWrapperConfig(...).to_dict()`` writes it)."""
    from transformers import TimmWrapperConfig

    config = TimmWrapperConfig(architecture=architecture, model_args={"checkpoint_path": str(outside_checkpoint)})
    return config.to_dict()


@pytest.mark.parametrize("hole", ["checkpoint_path", "local-dir"])
def test_a_visual_member_of_another_library_reading_outside_is_refused_before_anything_is_built(
    saved_ensemble, tmp_path, no_timm_build, hole
):
    outside = tmp_path / "outside"
    outside.mkdir()
    torch.save({"weight": torch.zeros(1)}, outside / "weights.pth")  # would be torch.load-ed
    folder = tmp_path / "ensemble"
    shutil.copytree(saved_ensemble, folder)
    wrapper = _timm_wrapper(outside / "weights.pth")
    if hole == "local-dir":
        wrapper.update(architecture=f"local-dir:{outside}", model_args={})
    (folder / "vision" / "config.json").write_text(json.dumps(wrapper))
    with pytest.raises(UnsafeModelFolderError, match=r"base model 'vision' .*model_type 'timm_wrapper' is not one"):
        MemotionEnsembleModel.from_pretrained(folder)


def test_a_joint_member_whose_image_tower_is_a_timm_wrapper_is_refused(saved_ensemble, tmp_path, no_timm_build):
    outside = tmp_path / "weights.pth"
    torch.save({}, outside)
    folder = tmp_path / "ensemble"
    shutil.copytree(saved_ensemble, folder)
    config = json.loads((folder / "config.json").read_text())
    config["base_models"][1]["family"] = "multimodal"
    (folder / "config.json").write_text(json.dumps(config))
    text = json.loads((folder / "text" / "config.json").read_text())["text_config"]
    joint = {"model_type": "memotion_multimodal", "text_config": text, "vision_config": _timm_wrapper(outside)}
    (folder / "vision" / "config.json").write_text(json.dumps(joint))
    with pytest.raises(UnsafeModelFolderError, match=r"base model 'vision' .*: vision_config\.(model_type|model_args)"):
        MemotionEnsembleModel.from_pretrained(folder)


def test_a_tokenizer_config_naming_a_file_outside_is_refused(saved_ensemble, tmp_path):
    folder = tmp_path / "ensemble"
    shutil.copytree(saved_ensemble, folder)
    tokenizer_config = json.loads((folder / "text" / "tokenizer_config.json").read_text())
    tokenizer_config["vocab_file"] = "/etc/hostname"
    (folder / "text" / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    with pytest.raises(UnsafeModelFolderError, match=r"vocab_file = '/etc/hostname' names a file to read"):
        MemotionEnsembleModel.from_pretrained(folder)


# --- the pipeline's entry ---------------------------------------------------------------------------------------


@pytest.fixture
def transformers_parses_nothing(monkeypatch):
    """Any config parse by transformers fails the test: the folder check must come first."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("transformers parsed a config before the folder was checked")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.PretrainedConfig, "get_config_dict", refuse)


@pytest.mark.parametrize("hole", ["config linked outside", "config of gigabytes"])
def test_the_checked_pipeline_entry_refuses_before_transformers_parses(
    saved_ensemble, tmp_path, transformers_parses_nothing, hole
):
    from hf_memotion import meme_emotion_pipeline

    folder = tmp_path / "ensemble"
    shutil.copytree(saved_ensemble, folder)
    (folder / "config.json").unlink()
    if hole == "config linked outside":
        outside = tmp_path / "secret.json"
        outside.write_text(json.dumps({"model_type": "memotion_ensemble", "secret": "s3cr3t"}))
        (folder / "config.json").symlink_to(outside)
        match = "is a symlink to .*outside the folder"
    else:
        with open(folder / "config.json", "wb") as handle:
            handle.truncate(3 * 1024**3)  # 3 GB, sparse: never read whole
        match = "more than the .* this file may have"
    with pytest.raises(UnsafeModelFolderError, match=match):
        meme_emotion_pipeline(str(folder))


# --- connectivity -----------------------------------------------------------------------------------------------


def test_the_connectivity_line_never_shows_a_token(online_process, caplog):
    from hf_memotion.hub import connectivity

    online_process.setenv("HF_ENDPOINT", "http://reader:hf_SECRET_TOKEN@127.0.0.1:9")  # nothing listens on port 9
    with caplog.at_level(logging.INFO, logger=connectivity.__name__):
        assert connectivity.offline_if_unreachable(timeout=2)
    line = " ".join(r.getMessage() for r in caplog.records)
    assert "cannot be reached" in line and "http://127.0.0.1:9" in line
    assert "SECRET" not in line and "reader" not in line


@pytest.fixture
def no_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was opened to {args[0]}")

    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_connectivity_check_respects_local_files_only_and_an_explicit_offline_setting(
    online_process, no_connection, tmp_path
):
    from huggingface_hub.errors import LocalEntryNotFoundError

    from hf_memotion.hub import connectivity
    from hf_memotion.hub.snapshots import download_model_folder

    monkeypatch = online_process
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(LocalEntryNotFoundError):  # the cache alone, as asked: no connection, no retries
        download_model_folder("org/model", None, {"local_files_only": True, "cache_dir": str(tmp_path / "cache")})
    assert not huggingface_hub.constants.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in os.environ
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the user wants the Hub: nothing checked, nothing rewritten
    assert not connectivity.offline_if_unreachable(timeout=2)
    assert os.environ["HF_HUB_OFFLINE"] == "0" and not huggingface_hub.constants.HF_HUB_OFFLINE


# --- bounded by what the models saw ------------------------------------------------------------------------------


def test_heat_maps_come_at_the_models_input_size_with_their_place_in_the_meme(saved_ensemble):
    from transformers import pipeline

    pipe = pipeline("meme-emotion", model=str(saved_ensemble), dtype=torch.float32)
    thin = Image.new("RGB", (3200, 80), (200, 40, 40))  # 40:1, the thinnest meme the decoder admits
    explanation = pipe({"image": thin, "text": "lol"}, explain=True, ten_crop=False)["explanation"]
    crop = pipe.model.processor.inputs_of("vision")[0].processor.crop_size
    for answer in explanation.values():
        heatmap, (left, top, right, bottom) = answer["heatmaps"]["vision"], answer["regions"]["vision"]
        assert heatmap.shape == (crop, crop) and heatmap.dtype == np.float32
        assert 0 <= left < right <= 3200 and 0 <= top < bottom <= 80  # the centre crop, in the meme's pixels
        assert right - left == pytest.approx(bottom - top, rel=0.05)  # a square crop stays square
    total = sum(a["heatmaps"]["vision"].nbytes for a in explanation.values())
    assert total <= len(explanation) * crop * crop * 4


def test_a_crop_fraction_outside_what_models_use_is_refused_on_loading(saved_ensemble, tmp_path):
    folder = tmp_path / "ensemble"
    shutil.copytree(saved_ensemble, folder)
    file = folder / "vision" / "preprocessor_config.json"
    settings = json.loads(file.read_text())
    settings["crop_pct"] = 1e-6  # a 64 x 64 meme would be resized to gigabytes
    file.write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"crop_pct must be a number from 0.5 to 1.5, got 1e-06"):
        MemotionEnsembleModel.from_pretrained(folder)


def _meta_entry(folder):
    config = json.loads((folder / "config.json").read_text())
    problem = next(p for p, e in config["meta"].items() if e["num_classes"] == 2)
    return config, problem


@pytest.mark.parametrize(
    ("calibration", "match"),
    [
        ({"method": "temperature", "parameters": {"temperature": 5e-324}}, "temperature must be between"),
        (
            {"method": "isotonic", "parameters": {"thresholds": [[0.9, 0.1]], "values": [[0.5, 0.2]]}},
            "must rise from 0 to 1",
        ),
        (
            {"method": "isotonic", "parameters": {"thresholds": [[0.0, 0.5]], "values": [[-5.0, 1.0]]}},
            "must rise from 0 to 1",
        ),
        (
            {
                "method": "isotonic",
                "parameters": {
                    "thresholds": [np.linspace(0, 1, 20_001).tolist()],
                    "values": [np.linspace(0, 1, 20_001).tolist()],
                },
            },
            "at most 10000 numbers",
        ),
        ({"method": "sigmoid", "parameters": {"slopes": [1e300], "intercepts": [0.0]}}, "within"),
    ],
    ids=["tiny temperature", "unsorted map", "values below 0", "a map of 20,001 points", "huge slope"],
)
def test_calibration_maps_that_would_serve_non_probabilities_are_refused_on_loading(
    saved_ensemble, tmp_path, calibration, match
):
    folder = tmp_path / "ensemble"
    shutil.copytree(saved_ensemble, folder)
    config, problem = _meta_entry(folder)
    config["meta"][problem]["calibration"] = calibration
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        MemotionEnsembleModel.from_pretrained(folder)


def test_onnx_classes_that_do_not_fit_the_problem_are_refused_on_loading(saved_ensemble, tmp_path):
    folder = tmp_path / "ensemble"
    shutil.copytree(saved_ensemble, folder)
    config, problem = _meta_entry(folder)
    config["meta"][problem]["onnx_classes"] = [0, 7]  # a two-class problem
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"onnx_classes must list distinct class ids"):
        MemotionEnsembleModel.from_pretrained(folder)


# --- ONNX external data -------------------------------------------------------------------------------------------


def test_onnx_external_data_outside_the_folder_is_refused_by_the_library_itself(synthetic, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    exported = tmp_path / "onnx"
    build_tiny_ensemble(synthetic).export_onnx(exported)
    config = json.loads((exported / "config.json").read_text())
    entry = next(iter(config["meta"].values()))
    graph_file = exported / entry["file"]
    model = onnx.load(str(graph_file))
    weight = helper.make_tensor("outside_weight", TensorProto.FLOAT, [1], [0.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../../../../../../../etc/hostname")
    model.graph.initializer.append(weight)
    onnx.save(model, str(graph_file))
    with pytest.raises(UnsafeModelFolderError, match=r"tensor 'outside_weight' reads external data .* leaves"):
        MemotionEnsembleModel.from_pretrained(exported)
