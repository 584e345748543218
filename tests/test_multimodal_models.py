"""The joint image-text family, CLIP and SigLIP towers by Hub id (offline, a Hub-layout cache), joint members."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForSequenceClassification,
    AutoProcessor,
    BertConfig,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    SiglipConfig,
    SiglipModel,
    SiglipVisionConfig,
)

from hf_memotion.ensemble import MemotionEnsembleConfig, MemotionEnsembleModel, fit_stackers
from hf_memotion.models.multimodal import (
    MemotionMultimodalConfig,
    MemotionMultimodalForClassification,
    MemotionMultimodalProcessor,
    image_processor_for,
)
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.models.vision import (
    MemotionImageProcessor,
    MemotionVisionConfig,
    MemotionVisionForImageClassification,
)
from hf_memotion.tasks import PROBLEM_NAMES, get_problem

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ["when the exam is on monday lol", "hate this so much", "so funny hilarious", "sure totally honest"]
TOWER = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
TIMM_IMAGE = {"model_type": "memotion_vision", "architecture": "test_resnet"}
REVISION = "0" * 40


def _bert():
    return BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def _joint(fusion="interaction", **kwargs) -> MemotionMultimodalForClassification:
    torch.manual_seed(0)
    config = MemotionMultimodalConfig(
        vision_config=TIMM_IMAGE,
        text_config=_bert(),
        problems=["humour", "humour_intensity"],
        fusion=fusion,
        projection_dim=4,
        ffn_size=8,
        **kwargs,
    )
    return MemotionMultimodalForClassification(config)


def _inputs(batch=2, crops=None):
    shape = (batch, 3, 32, 32) if crops is None else (batch, crops, 3, 32, 32)
    return {
        "pixel_values": torch.rand(*shape, generator=torch.Generator().manual_seed(0)),
        "input_ids": torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]])[:batch],
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])[:batch],
    }


# ------------------------------------------------------------------------------------------------- configuration


def test_the_config_checks_its_fields_and_reads_a_dual_encoder():
    with pytest.raises(ValueError, match="fusion must be one of"):
        MemotionMultimodalConfig(fusion="sum")
    with pytest.raises(ValueError, match="text_pooling must be one of"):
        MemotionMultimodalConfig(text_pooling="cls")
    clip = CLIPConfig(text_config=TOWER, vision_config={**TOWER, "image_size": 32, "patch_size": 8})
    config = MemotionMultimodalConfig(dual_encoder_config=clip, problems=["humour"])
    assert (config.vision_config.model_type, config.text_config.model_type) == ("clip_vision_model", "clip_text_model")
    assert config.text_pooling == "pooler"  # CLIP's end-of-text token
    assert MemotionMultimodalConfig(text_config=_bert()).text_pooling == "first"
    with pytest.raises(ValueError, match="dual_encoder_config"):
        MemotionMultimodalConfig(vision_config=clip)
    with pytest.raises(ValueError, match="not a CLIP or SigLIP|CLIP or SigLIP dual encoder"):
        MemotionMultimodalConfig(dual_encoder_config=_bert())


# ------------------------------------------------------------------------------------------------------- modelling


@pytest.mark.parametrize("fusion", ["concat", "interaction", "align"])
def test_each_fusion_classifies_memes_and_round_trips_through_the_auto_classes(tmp_path, fusion):
    model = _joint(fusion).eval()
    inputs = _inputs()
    out = model(**inputs, labels=torch.tensor([[1, 2], [0, 3]]))
    assert out.logits.shape == (2, 6) and out.loss.ndim == 0
    width = {"concat": 8, "interaction": 16, "align": 4}[fusion]
    assert model.memotion_multimodal(**inputs).pooler_output.shape == (2, width)
    model.save_pretrained(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".py", ".bin", ".pt", ".pkl")]
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is MemotionMultimodalForClassification
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)
    card = (tmp_path / "README.md").read_text()
    assert "joint base model" in card and "library_name: hf-memotion" in card
    assert "AutoModelForSequenceClassification" in card and "AutoProcessor" in card  # how it loads


def test_ten_crops_average_the_image_features():
    model = _joint("concat").eval()
    single = _inputs(batch=1)
    crops = {**single, "pixel_values": single["pixel_values"][:, None].expand(1, 10, 3, 32, 32)}
    torch.testing.assert_close(model(**crops).logits, model(**single).logits, atol=1e-5, rtol=1e-5)
    different = {**single, "pixel_values": torch.rand(1, 10, 3, 32, 32)}
    encoders = model.memotion_multimodal
    expected = encoders.image_encoder(different["pixel_values"][0]).pooler_output.mean(0)
    torch.testing.assert_close(encoders.image_features(different["pixel_values"])[0], expected, atol=1e-5, rtol=1e-5)


def test_frozen_encoders_keep_their_weights_and_statistics_through_training_and_loading(tmp_path):
    _joint(freeze_image_encoder=True, freeze_text_encoder=True).save_pretrained(tmp_path)
    model = MemotionMultimodalForClassification.from_pretrained(tmp_path).train()
    encoders = model.memotion_multimodal
    assert not encoders.image_encoder.training and not encoders.text_encoder.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    for _ in range(2):
        model(**_inputs(), labels=torch.tensor([[1, 2], [0, 3]])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    encoders = ("memotion_multimodal.image_encoder", "memotion_multimodal.text_encoder")
    assert changed and not [k for k in changed if k.startswith(encoders)]
    assert any(k.startswith("memotion_multimodal.image_projection") for k in changed)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_clip_and_siglip_towers_build_joint_and_textual_members(tmp_path, family):
    text_config, tokenizer = build_tiny_text_backbone(family, CORPUS, hidden_size=16, num_layers=1)
    vision_class = CLIPVisionConfig if family == "clip" else SiglipVisionConfig
    vision_config = vision_class(**TOWER, image_size=32, patch_size=8)
    config = MemotionMultimodalConfig(
        vision_config=vision_config, text_config=text_config, problems=["sentiment"], projection_dim=4, ffn_size=8
    )
    assert config.text_pooling == "pooler"
    model = MemotionMultimodalForClassification(config).eval()
    processor = MemotionMultimodalProcessor(image_processor_for(vision_config), tokenizer)
    batch = processor(images=[Image.new("RGB", (40, 30))] * 2, text=["lol", "hate this"], ten_crop=True)
    assert model(**batch).logits.shape == (2, 3)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(tmp_path)) is MemotionMultimodalProcessor
    text = MemotionTextForSequenceClassification(
        MemotionTextConfig(text_config=text_config, problems=["humour"], lstm_hidden_size=8, attention_size=8)
    )
    assert text.config.pooling == "last"  # the tower's summary token
    assert text(**tokenizer(["lol nice"], return_tensors="pt")).logits.shape == (1, 2)


# --------------------------------------------------------------------------------------- by Hub id, offline


def _publish(folder: Path, cache: Path, repo_id: str) -> None:
    """Lay a saved folder out as the Hugging Face cache holds a downloaded repository (blobs, snapshot links, ref)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for index, file in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        blob = repo / "blobs" / f"{index:040x}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(file.read_bytes())
        link = repo / "snapshots" / REVISION / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A Hub cache holding tiny CLIP and SigLIP dual encoders (with tokenizers) and a timm image tower."""
    root = tmp_path_factory.mktemp("hub")
    cache = root / "cache"
    torch.manual_seed(0)
    sources = {}
    for family, model_class, config_class in (("clip", CLIPModel, CLIPConfig), ("siglip", SiglipModel, SiglipConfig)):
        text_config, tokenizer = build_tiny_text_backbone(family, CORPUS, hidden_size=16, num_layers=1)
        text = {k: v for k, v in text_config.to_dict().items() if k not in ("architectures", "transformers_version")}
        model = model_class(config_class(text_config=text, vision_config={**TOWER, "image_size": 32, "patch_size": 8}))
        folder = root / family
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        _publish(folder, cache, f"tiny-org/{family}-dual")
        sources[family] = model.eval()
    import timm
    from safetensors.torch import save_file

    network = timm.create_model("test_vit", num_classes=0)
    folder = root / "timm"
    folder.mkdir()
    save_file(network.state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"architecture": "test_vit", "num_classes": 0}))
    _publish(folder, cache, "timm/test_vit.r160_in1k")
    return cache, sources, network.state_dict()


@pytest.fixture
def offline_hub(hub_cache, monkeypatch):
    cache, *_ = hub_cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return hub_cache


def _same_weights(tower: torch.nn.Module, source: torch.nn.Module, side: str) -> None:
    got = sorted(round(float(v.double().sum()), 6) for v in tower.state_dict().values() if v.is_floating_point())
    expected = sorted(
        round(float(v.double().sum()), 6)
        for k, v in source.state_dict().items()
        if k.startswith(f"{side}_model.") and v.is_floating_point()
    )
    assert got and got == expected


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_dual_encoders_load_by_hub_id_as_joint_and_textual_members(offline_hub, family):
    _, sources, _ = offline_hub
    repo = f"tiny-org/{family}-dual"
    joint = MemotionMultimodalForClassification.from_encoders(repo, problems=["humour"], projection_dim=4)
    _same_weights(joint.memotion_multimodal.image_encoder, sources[family], "vision")
    _same_weights(joint.memotion_multimodal.text_encoder, sources[family], "text")
    text = MemotionTextForSequenceClassification.from_backbone(repo, problems=["humour"], lstm_hidden_size=8)
    _same_weights(text.memotion_text.backbone, sources[family], "text")
    processor = image_processor_for(joint.config.vision_config, repo)
    assert processor.crop_size == 32


def test_a_timm_clip_style_tower_loads_by_hub_id_as_a_visual_member(offline_hub):
    *_, expected = offline_hub
    # the path of "vit_large_patch14_clip_224.openai": timm's tag names a Hub repository (timm/...), read offline
    model = MemotionVisionForImageClassification.from_timm("test_vit.r160_in1k", problems=["humour"])
    for key, value in expected.items():
        torch.testing.assert_close(model.timm_model.state_dict()[key], value)


def test_a_text_checkpoint_is_refused_as_an_image_tower_in_one_line(offline_hub, tmp_path):
    from hf_memotion.models.towers import load_tower

    text_config, _ = build_tiny_text_backbone("bert", CORPUS, hidden_size=16, num_layers=1)
    from transformers import BertModel

    BertModel(text_config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'bert' model is not an image encoder"):
        load_tower(tmp_path, "vision")


# ------------------------------------------------------------------------------------------ ensemble members


def _joint_ensemble(max_length=16) -> MemotionEnsembleModel:
    torch.manual_seed(0)
    backbone, tokenizer = build_tiny_text_backbone("bert", CORPUS, hidden_size=16, num_layers=1)
    problems = list(PROBLEM_NAMES)
    text = MemotionTextForSequenceClassification(
        MemotionTextConfig(
            text_config=backbone,
            problems=problems,
            lstm_hidden_size=8,
            attention_size=8,
            ffn_size=8,
            max_length=max_length,
        )
    ).eval()
    vision = MemotionVisionForImageClassification(
        MemotionVisionConfig(architecture="test_resnet", problems=problems)
    ).eval()
    image_processor = MemotionImageProcessor.from_timm("test_resnet", crop_size=32)
    joint = MemotionMultimodalForClassification(
        MemotionMultimodalConfig(
            vision_config=TIMM_IMAGE,
            text_config=backbone,
            problems=problems,
            projection_dim=4,
            ffn_size=8,
            max_length=16,
        )
    ).eval()
    rng = np.random.default_rng(0)
    labels = {p: rng.integers(0, get_problem(p).num_labels, 60) for p in problems}
    oof = {
        name: {p: rng.dirichlet(np.ones(get_problem(p).num_labels), 60) for p in problems}
        for name in ("text", "vision", "joint")
    }
    stackers = fit_stackers(oof, labels, candidates={p: ["logistic_regression"] for p in problems})
    config = MemotionEnsembleConfig(
        problems=problems,
        base_models=[
            {"name": "text", "family": "text", "path": "text", "problems": problems},
            {"name": "vision", "family": "vision", "path": "vision", "problems": problems},
            {"name": "joint", "family": "multimodal", "path": "joint", "problems": problems},
        ],
    )
    processor = MemotionMultimodalProcessor(image_processor, tokenizer)
    return MemotionEnsembleModel(
        config,
        base_models={"text": (text, tokenizer), "vision": (vision, image_processor), "joint": (joint, processor)},
        stackers=stackers,
    )


def test_the_meme_processor_feeds_a_joint_member_both_inputs_once():
    ensemble = _joint_ensemble(max_length=16)
    processor = ensemble.processor
    assert processor.groups_of == {"text": ["text"], "vision": ["vision"], "joint": ["text", "vision"]}
    batch = processor([Image.new("RGB", (40, 30))], ["lol hate"], ten_crop=False)
    assert sorted(batch) == ["text.attention_mask", "text.input_ids", "vision.pixel_values"]
    inputs = processor.model_inputs(batch, "joint")
    assert sorted(inputs) == ["attention_mask", "input_ids", "pixel_values"]
    other = _joint_ensemble(max_length=8).processor  # another max_length: the joint member's text half is its own
    assert other.groups_of["joint"] == ["joint-text", "vision"]


def test_an_ensemble_with_a_joint_member_saves_loads_and_serves(tmp_path):
    from transformers import pipeline

    ensemble = _joint_ensemble()
    ensemble.save_pretrained(tmp_path / "ensemble")
    assert (tmp_path / "ensemble" / "joint" / "processor_config.json").is_file()
    loaded = MemotionEnsembleModel.from_pretrained(tmp_path / "ensemble")
    assert type(loaded.preprocessors["joint"]) is MemotionMultimodalProcessor
    meme = {"image": Image.new("RGB", (40, 30), (200, 30, 30)), "text": "so funny lol"}
    pipe = pipeline("meme-emotion", model=loaded)
    out = pipe(meme, return_base=True, explain=True)
    assert set(out["modalities"]) == {"text", "vision", "multimodal"}
    assert "joint" in out["base"]
    explanation = out["explanation"]["humour"]
    assert set(explanation["members"]) == {"text", "vision", "joint"}
    assert set(explanation["heatmaps"]) == {"vision"} and set(explanation["words"]) == {"text"}
    total = explanation["baseline"] + sum(explanation["members"].values())
    assert total == pytest.approx(explanation["score"], abs=1e-6)
    with pytest.raises(ValueError, match="joint.*ONNX export does not cover"):
        loaded.export_onnx(tmp_path / "onnx")


# ------------------------------------------------------------------------------------------------ training, plan


def test_a_run_with_a_joint_member_stacks_it_and_reports_the_joint_rows(tmp_path):
    config = f"""
data:
  demo: {{output_dir: {tmp_path / "data"}, n_train: 48, n_test: 16, seed: 0, image_size: 48}}
output_dir: {tmp_path / "run"}
n_splits: 2
models:
  - {{name: text, family: text, backbone: "tiny:bert", tiny: {{hidden_size: 16, num_layers: 1}},
     model: {{lstm_hidden_size: 8, attention_size: 8, ffn_size: 8, max_length: 16}},
     training: {{epochs: 1, learning_rate: 0.003, batch_size: 16}}}}
  - {{name: vision, family: vision, architecture: test_resnet, processor: {{crop_size: 32}}, ten_crop: false,
     training: {{epochs: 1, learning_rate: 0.01, batch_size: 16, validation_fraction: 0.1}}}}
  - {{name: joint, family: multimodal, architecture: test_resnet, backbone: "tiny:bert",
     tiny: {{hidden_size: 16, num_layers: 1}}, processor: {{crop_size: 32}}, ten_crop: false,
     model: {{projection_dim: 4, ffn_size: 8, max_length: 16}},
     training: {{epochs: 1, learning_rate: 0.003, batch_size: 16}}}}
stacking: {{methods: [average, logistic_regression]}}
bf16_check: false
"""
    path = tmp_path / "joint.yaml"
    path.write_text(config)
    env = {**os.environ, "HF_MEMOTION_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), str(path)], env=env, text=True, capture_output=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    names = [row["name"] for row in report["table7"]]
    expected = {"joint", "ensemble (joint)", "ensemble (unimodal members)", "ensemble all (modality ensemble)"}
    assert expected <= set(names)
    ensemble = json.loads((tmp_path / "run" / "ensemble" / "config.json").read_text())
    assert {e["name"]: e["family"] for e in ensemble["base_models"]}["joint"] == "multimodal"
    assert (tmp_path / "run" / "ensemble" / "joint" / "tokenizer.json").is_file()


def test_the_modern_config_plans_its_clip_members_offline():
    from hf_memotion.recipe.planning import plan_training
    from hf_memotion.specs import load_run_config

    plan = plan_training(load_run_config(ROOT / "configs" / "modern.yaml"))
    by_name = {m.name: m for m in plan.models}
    assert by_name["clip_joint"].family == "multimodal"
    assert by_name["clip_joint"].trainings == 6  # 5 folds and the refit: a joint member selects nothing
    assert by_name["clip_image"].trainings == 16  # three learning rates x 5 folds, then the refit
    assert by_name["clip_text"].candidates == 30
    assert by_name["clip_joint"].step_flops > 0 and by_name["clip_joint"].parameters > 4e8


@pytest.mark.slow
def test_the_demo_joint_member_beats_every_unimodal_member_on_subtask_c(tmp_path):
    """Issue 32's measure: on the demo data only both halves together give an intensity, so the joint member must
    beat the best unimodal member on subtask C, and the ensemble with it must reach the one without it."""
    env = {**os.environ, "HF_MEMOTION_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        str(ROOT / "configs" / "demo_joint.yaml"),
        f"data.demo.output_dir={tmp_path / 'data'}",
        f"output_dir={tmp_path / 'run'}",
        "bf16_check=false",
    ]
    result = subprocess.run(command, env=env, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["name"]: row["scores"] for row in json.loads((tmp_path / "run" / "report.json").read_text())["table7"]}
    assert rows["joint"]["subtask_c"] > max(rows["text"]["subtask_c"], rows["vision"]["subtask_c"]) + 0.05
    assert rows["ensemble all (modality ensemble)"]["subtask_c"] >= rows["ensemble (unimodal members)"]["subtask_c"]


def test_cached_dual_encoders_plan_as_textual_and_joint_members(offline_hub):
    from hf_memotion.recipe.planning import plan_training

    config = {
        "data": {"demo": {"n_train": 60, "n_test": 20}},
        "n_splits": 2,
        "models": [
            {"name": "clip_text", "family": "text", "backbone": "tiny-org/clip-dual", "model": {"max_length": 16}},
            {"name": "siglip_text", "family": "text", "backbone": "tiny-org/siglip-dual"},  # max_length 128 > 64
            {
                "name": "siglip_joint",
                "family": "multimodal",
                "backbone": "tiny-org/siglip-dual",
                "image_encoder": "dual",
                "model": {"projection_dim": 4, "max_length": 16},
            },
        ],
    }
    plan = {m.name: m for m in plan_training(config).models}
    assert plan["clip_text"].step_flops > 0 and plan["siglip_joint"].step_flops > 0
    assert plan["siglip_text"].step_flops > 0  # planned at the tower's own length, as it is fed
    assert plan["siglip_joint"].architecture == "tiny-org/siglip-dual (text + image)"
