"""The contracts transformers users rely on, for the text, vision and VisE models (issue 14's "done when").

transformers' own common tests run in ``tests/conformance``; these are the project's own checks of the same
contracts where a bug was found: class weights after ``from_pretrained``, export of the text model, labels
given at load time, the VisE classifier's ``problem_type``, saved folders without code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import BertConfig

import hf_memotion  # noqa: F401
from hf_memotion.models.multimodal import MemotionMultimodalConfig, MemotionMultimodalForClassification
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.vise import ViseConfig, ViseForImageClassification, ViseModel
from hf_memotion.models.vision import MemotionVisionConfig, MemotionVisionForImageClassification

WEIGHTS = {"sentiment": [0.25, 1.0, 4.0]}


def _text(**overrides) -> MemotionTextForSequenceClassification:
    backbone = BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    settings = {
        "problems": ["sentiment"],
        "class_weights": WEIGHTS,
        "lstm_hidden_size": 8,
        "lstm_layers": 2,
        "attention_size": 8,
        "ffn_size": 8,
        **overrides,
    }
    return MemotionTextForSequenceClassification(MemotionTextConfig(text_config=backbone, **settings))


def _text_batch() -> dict:
    torch.manual_seed(1)
    mask = torch.ones(4, 9, dtype=torch.long)
    mask[1, 6:] = 0  # right padding
    mask[2, :4] = 0  # left padding
    mask[3, 1:] = 0  # one token
    return {"input_ids": torch.randint(5, 60, (4, 9)), "attention_mask": mask}


def _classifiers():
    torch.manual_seed(0)
    vision = MemotionVisionForImageClassification(
        MemotionVisionConfig(architecture="test_resnet", problems=["sentiment"], class_weights=WEIGHTS)
    )
    vise = ViseForImageClassification(ViseConfig(architecture="test_resnet", num_labels=3))
    images = {"pixel_values": torch.rand(4, 3, 32, 32)}
    joint = MemotionMultimodalForClassification(
        MemotionMultimodalConfig(
            vision_config={"model_type": "memotion_vision", "architecture": "test_resnet"},
            text_config=_text().config.text_config,
            problems=["sentiment"],
            class_weights=WEIGHTS,
            projection_dim=4,
            ffn_size=8,
        )
    )
    return [(_text(), _text_batch()), (vision, images), (vise, images), (joint, {**_text_batch(), **images})]


@pytest.mark.parametrize("index", [0, 1, 2, 3], ids=["text", "vision", "vise", "joint"])
def test_a_loaded_classifier_computes_the_same_weighted_loss(tmp_path, index):
    model, batch = _classifiers()[index]
    model.eval()
    labels = torch.tensor([0, 1, 2, 2])
    with torch.no_grad():
        expected = model(**batch, labels=labels).loss
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(dict(loaded.named_buffers())[name], buffer, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch, labels=labels).loss, expected)
    if index < 2:  # the class weights themselves, which the bug left as uninitialised memory
        assert loaded.heads.class_weights("sentiment").tolist() == WEIGHTS["sentiment"]


def test_the_text_classifier_exports_with_the_eager_outputs():
    model = _text().eval()
    batch = _text_batch()
    with torch.no_grad():
        eager = model(**batch)
        program = torch.export.export(model, args=(), kwargs=batch, strict=False)
        exported = program.module()(**batch)
        model.config.lstm_implementation = "masked"
        masked = model(**batch)
    torch.testing.assert_close(exported.logits, eager.logits)
    torch.testing.assert_close(masked.logits, eager.logits)
    torch.testing.assert_close(masked.pooler_output, eager.pooler_output)


def test_outputs_follow_return_dict_hidden_states_and_attentions():
    model = _text().eval()
    batch = _text_batch()
    assert not model(**batch, output_attentions=True).attentions  # sdpa gives no weights (a warning says so)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        as_tuple = model(**batch, return_dict=False)
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.logits)
    assert len(out.hidden_states) == 2 + 1 + 2  # embeddings + 2 layers, then BiLSTM and attention states
    assert out.hidden_states[0].shape == (4, 9, 16) and out.hidden_states[-1].shape == (4, 9, 8)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (4, 2, 9, 9)
    assert out.pooler_output.shape == (4, 8)


def test_new_tokens_resize_the_text_backbone_embeddings():
    model = _text()
    model.resize_token_embeddings(64)
    assert model.get_input_embeddings().num_embeddings == 64 and model.config.text_config.vocab_size == 64
    with torch.no_grad():
        assert model(input_ids=torch.tensor([[63, 5, 2]])).logits.shape == (1, 3)


def test_num_labels_at_load_time_relabels_the_heads_or_raises(tmp_path):
    model = _text()
    model.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError):
        MemotionTextForSequenceClassification.from_pretrained(tmp_path, num_labels=7)
    relabelled = MemotionTextForSequenceClassification.from_pretrained(
        tmp_path, num_labels=7, ignore_mismatched_sizes=True
    )
    assert relabelled.config.num_labels == 7 == len(relabelled.config.id2label)
    assert relabelled.heads.classifiers["sentiment"].out_features == 7
    assert relabelled.config.class_weights is None  # the old three weights no longer fit
    several = _text(problems=["humour", "sarcasm"], class_weights=None)
    with pytest.raises(ValueError, match="cannot say which problem"):
        several.config.num_labels = 3
    with pytest.raises(ValueError, match="problem_labels"):
        MemotionVisionConfig(architecture="test_resnet", problems=["humour", "sarcasm"], num_labels=5)


def test_the_vise_classifier_honours_problem_type():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    multi = ViseForImageClassification(
        ViseConfig(architecture="test_resnet", num_labels=3, problem_type="multi_label_classification")
    )
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = multi(images, labels=targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets)
    torch.testing.assert_close(out.loss, expected)
    regression = ViseForImageClassification(ViseConfig(architecture="test_resnet", num_labels=1))
    out = regression(images, labels=torch.tensor([0.5, -1.0]))  # one output: regression, as in transformers
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits[:, 0], torch.tensor([0.5, -1.0])))


def test_saved_folders_hold_no_code_and_loading_needs_only_the_package(tmp_path):
    from hf_memotion.models.vision import MemotionImageProcessor

    text, vision, vise, joint = (model for model, _ in _classifiers())
    models = {"text": text, "vision": vision, "vise": vise, "vise_backbone": ViseModel(vise.config), "joint": joint}
    for name, model in models.items():
        model.save_pretrained(tmp_path / name)
        MemotionImageProcessor.from_timm("test_resnet").save_pretrained(tmp_path / name)
        assert not list((tmp_path / name).rglob("*.py")), name
        for file in (tmp_path / name).glob("*.json"):
            assert "auto_map" not in json.loads(file.read_text()), f"{name}/{file.name}"
        card = (tmp_path / name / "README.md").read_text()
        assert "library_name: hf-memotion" in card and "pip install hf-memotion" in card
    fresh = textwrap.dedent(f"""
        import hf_memotion
        from transformers import AutoModelForSequenceClassification, AutoModelForImageClassification
        print(type(AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "text")!r})).__name__)
        print(type(AutoModelForImageClassification.from_pretrained({str(tmp_path / "vise")!r})).__name__)
        print(type(AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "joint")!r})).__name__)
    """)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", fresh], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == [
        "MemotionTextForSequenceClassification",
        "ViseForImageClassification",
        "MemotionMultimodalForClassification",
    ]
    # Without the package (its import blocked), transformers refuses the folder and runs nothing from it.
    blocked = textwrap.dedent(f"""
        import sys
        sys.modules["hf_memotion"] = None
        from transformers import AutoModelForSequenceClassification
        try:
            AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "text")!r})
        except ValueError as err:
            print("refused:", str(err).splitlines()[0])
    """)
    out = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, env=env, check=True).stdout
    assert "refused:" in out and "memotion_text" in out


@pytest.mark.parametrize("index", [0, 1, 2, 3], ids=["text", "vision", "vise", "joint"])
def test_classifiers_load_in_another_dtype_and_with_a_device_map(tmp_path, index):
    model, batch = _classifiers()[index]
    model.save_pretrained(tmp_path)
    labels = torch.tensor([0, 1, 2, 2])
    half = type(model).from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    mapped = type(model).from_pretrained(tmp_path, device_map="cpu").eval()
    with torch.no_grad():
        low = half(**{k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()}, labels=labels)
        full = mapped(**batch, labels=labels)
    assert next(half.parameters()).dtype == torch.bfloat16 and low.logits.dtype == torch.bfloat16
    assert torch.isfinite(low.loss) and abs(float(low.loss) - float(full.loss)) < 0.05
