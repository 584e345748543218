"""VisE backbones: Auto classes round trip, the pretraining heads and loss, the released-checkpoint converter."""

import math

import pytest
import torch
import torchvision
from transformers import AutoConfig, AutoModel

import hf_memotion  # noqa: F401  (registers the Auto classes)
from hf_memotion.models.vise import (
    CheckpointMismatchError,
    ViseConfig,
    ViseForPretraining,
    ViseModel,
    convert_released_checkpoint,
    load_released_state_dict,
)


def test_automodel_loads_a_saved_backbone_with_identical_features(tmp_path):
    torch.manual_seed(0)
    model = ViseModel(ViseConfig(architecture="test_resnet")).eval()
    model.save_pretrained(tmp_path / "vise")
    assert (tmp_path / "vise" / "model.safetensors").is_file()
    loaded = AutoModel.from_pretrained(tmp_path / "vise").eval()
    assert type(loaded) is ViseModel and AutoConfig.from_pretrained(tmp_path / "vise").model_type == "vise"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x).pooler_output, loaded(x).pooler_output)
        assert torch.equal(model(x).last_hidden_state, loaded(x).last_hidden_state)


def test_a_pretraining_folder_loads_as_the_backbone(tmp_path):
    torch.manual_seed(0)
    model = ViseForPretraining(ViseConfig(architecture="test_resnet", comment_clusters=10, reaction_clusters=4)).eval()
    model.save_pretrained(tmp_path / "pre")
    backbone = AutoModel.from_pretrained(tmp_path / "pre").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x).pooler_output, model(x).pooler_output)


def test_heads_start_at_the_prior_and_the_loss_is_eq_1():
    config = ViseConfig(architecture="test_resnet", comment_clusters=8, reaction_clusters=3, prior_probability=0.01)
    model = ViseForPretraining(config)
    assert torch.allclose(model.comment_head.bias, torch.full((8,), -math.log(99)))
    assert torch.allclose(model.reaction_head.bias, torch.full((3,), -math.log(99)))
    x = torch.rand(3, 3, 64, 64)
    targets = torch.tensor([[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0.0] * 8, [0, 0, 0, 0, 0, 0, 0.25, 0.75]])
    labels = torch.tensor([1, 2, -1])
    out = model(x, comment_targets=targets, reaction_labels=labels)
    logp = out.comment_logits.log_softmax(-1)
    soft = -((targets * logp).sum(-1))[[0, 2]].mean()  # the post without comments adds nothing
    hard = torch.nn.functional.cross_entropy(out.reaction_logits[:2], labels[:2])  # -1 ignored
    assert torch.allclose(out.comment_loss, soft) and torch.allclose(out.reaction_loss, hard)
    assert torch.allclose(out.loss, soft + hard)


def test_training_steps_lower_both_losses():
    torch.manual_seed(0)
    model = ViseForPretraining(ViseConfig(architecture="test_resnet", comment_clusters=6, reaction_clusters=3))
    x = torch.rand(8, 3, 64, 64)
    targets = torch.eye(6)[torch.arange(8) % 6]
    labels = torch.arange(8) % 3
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = model(x, comment_targets=targets, reaction_labels=labels)
    for _ in range(15):
        out = model(x, comment_targets=targets, reaction_labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    last = model(x, comment_targets=targets, reaction_labels=labels)
    assert last.comment_loss < first.comment_loss and last.reaction_loss < first.reaction_loss


def _released_module():
    torch.manual_seed(1)
    module = torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-2]).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, as a trained checkpoint has
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return module


def test_the_converter_reproduces_the_released_modules_feature_map(tmp_path):
    module = _released_module()
    path = tmp_path / "resnet50_1m.pth"
    torch.save(module.state_dict(), path)
    state = load_released_state_dict(path)
    assert set(state) == set(module.state_dict()) and next(iter(state)).startswith("0.")
    model = convert_released_checkpoint(state)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = module(x)
        got = model(x).last_hidden_state
    assert got.shape == expected.shape == (2, 2048, 7, 7)
    assert torch.allclose(got, expected, atol=1e-5)
    model.save_pretrained(tmp_path / "converted")
    again = AutoModel.from_pretrained(tmp_path / "converted").eval()
    with torch.no_grad():
        assert torch.allclose(again(x).last_hidden_state, expected, atol=1e-5)


def test_the_converter_round_trips_the_released_layout_and_writes_a_licensed_folder(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from huggingface_hub import ModelCard
    from transformers import AutoImageProcessor

    from hf_memotion.models.vise import to_released_state_dict

    state = _released_module().state_dict()
    back = to_released_state_dict(convert_released_checkpoint(state))
    assert list(back) == list(state) and all(torch.equal(back[k], state[k]) for k in state)
    torch.save(state, tmp_path / "resnet50_250m.pth")
    script = Path(__file__).resolve().parents[1] / "scripts" / "convert_vise_checkpoint.py"
    run = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "resnet50_250m.pth"),
            str(tmp_path / "out"),
            "--model-id",
            "org/vise-resnet50-250m",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.license == "cc-by-nc-4.0" and "CC-BY-NC 4.0" in card.text
    assert 'AutoModel.from_pretrained("org/vise-resnet50-250m")' in card.text
    loaded = AutoModel.from_pretrained(tmp_path / "out")
    assert torch.equal(to_released_state_dict(loaded)["7.2.bn3.weight"], state["7.2.bn3.weight"])
    assert AutoImageProcessor.from_pretrained(tmp_path / "out").crop_size == 224
    from hf_memotion.hub import upload_plan

    planned = {f.path_in_repo for f in upload_plan(tmp_path / "out")}
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json"} <= planned
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    bad = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "junk.pth"), str(tmp_path / "bad")], capture_output=True, text=True
    )
    assert bad.returncode != 0 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_the_converter_checks_every_key_and_shape():
    state = _released_module().state_dict()
    broken = dict(state)
    broken.pop("7.2.bn3.weight")
    with pytest.raises(CheckpointMismatchError, match=r"missing \['layer4.2.bn3.weight'\]"):
        convert_released_checkpoint(broken)
    with pytest.raises(CheckpointMismatchError, match="unexpected key '8.weight'"):
        convert_released_checkpoint({**state, "8.weight": torch.zeros(1)})
    wrong = {**state, "0.weight": torch.zeros(64, 3, 5, 5)}
    with pytest.raises(CheckpointMismatchError, match=r"conv1.weight: \(64, 3, 5, 5\) != \(64, 3, 7, 7\)"):
        convert_released_checkpoint(wrong)


def test_image_classification_variant_loads_a_backbone_with_a_new_classifier(tmp_path):
    from transformers import AutoModelForImageClassification

    from hf_memotion.models.vise import ViseForImageClassification

    torch.manual_seed(0)
    backbone = ViseModel(ViseConfig(architecture="test_resnet")).eval()
    backbone.save_pretrained(tmp_path / "vise")
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "vise", num_labels=3).eval()
    assert isinstance(model, ViseForImageClassification) and model.config.num_labels == 3
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.vise(x).pooler_output, backbone(x).pooler_output)
        classifier = model.heads.classifiers["label"]
        assert classifier.bias.abs().max() == 0 and classifier.weight.std() < 0.05  # freshly initialised
        out = model(x, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    multimodal = ViseForImageClassification(ViseConfig(architecture="test_resnet", num_labels=2, extra_features=4))
    with pytest.raises(ValueError, match=r"extra_features of shape \(batch, 4\)"):
        multimodal(x)


def test_a_vise_backbone_becomes_a_visual_base_model_of_the_meme_ensemble(tmp_path):
    from hf_memotion.models.vision import MemotionVisionForImageClassification

    torch.manual_seed(0)
    backbone = ViseModel(ViseConfig(architecture="test_resnet")).eval()
    backbone.save_pretrained(tmp_path / "vise")
    model = MemotionVisionForImageClassification.from_vise(str(tmp_path / "vise"), problems=["humour", "sentiment"])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = backbone(x).pooler_output
        got = model.eval().timm_model.forward_head(model.timm_model.forward_features(x), pre_logits=True)
    assert torch.equal(got, expected) and model.config.architecture == "test_resnet"
    with pytest.raises(FileNotFoundError, match="vise_backbone"):
        MemotionVisionForImageClassification.from_vise(str(tmp_path / "missing"), problems=["humour"])
