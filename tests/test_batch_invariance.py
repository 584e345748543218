"""A meme's answer does not depend on the memes served beside it: every member kind, the ensemble and ONNX Runtime.

Each text tower is fed as it was pre-trained (:class:`~hf_memotion.models.text.preprocessing.TextFeeding`): BERT-like
and CLIP's towers read each batch padded to its longest text with the padding masked out, SigLIP's reads every text
padded to its full length with nothing masked (its pooled output is the last position's, padding or not). A meme's
probabilities must then be the same alone, in a batch of 8, and beside much longer and much shorter texts (fp32).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPVisionConfig, SiglipVisionConfig, pipeline

import hf_memotion  # noqa: F401  (registers "meme-emotion")
from hf_memotion.benchmarking import answers_difference
from hf_memotion.ensemble import MemotionEnsembleConfig, MemotionEnsembleModel, fit_stackers
from hf_memotion.models.multimodal import (
    MemotionMultimodalConfig,
    MemotionMultimodalForClassification,
    MemotionMultimodalProcessor,
    image_processor_for,
)
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.preprocessing import TextFeeding
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.models.vision import (
    MemotionImageProcessor,
    MemotionVisionConfig,
    MemotionVisionForImageClassification,
)
from hf_memotion.tasks import PROBLEM_NAMES, get_problem

TOLERANCE = 1e-5
CORPUS = ["when the exam is on monday lol", "hate this so much", "so funny hilarious", "sure totally honest a"]
TOWER = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
MEME_TEXT = "when the exam is on monday"
LONG_TEXT = " ".join(["so funny hilarious hate this so much sure totally honest"] * 5)  # 45 words
SHORT_TEXT = "a"
OTHER_TEXTS = ["lol", "hate this", "so funny hilarious lol", "sure", "totally honest lol lol", "exam", LONG_TEXT]


def _scaled(model: torch.nn.Module) -> torch.nn.Module:
    """Spread the random weights (std 0.3) so that a changed feature shows in the probabilities, then eval mode.

    At their initial scale (std 0.02) tiny towers give near-uniform probabilities, which hide a text fed differently.
    """
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def _image(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (30 + seed, 40, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _text_member(family: str):
    backbone, tokenizer = build_tiny_text_backbone(family, CORPUS, hidden_size=16, num_layers=1)
    config = MemotionTextConfig(
        text_config=backbone, problems=list(PROBLEM_NAMES), lstm_hidden_size=8, attention_size=8, ffn_size=8
    )
    return _scaled(MemotionTextForSequenceClassification(config)), tokenizer


def _vision_member():
    config = MemotionVisionConfig(architecture="test_resnet", problems=list(PROBLEM_NAMES))
    processor = MemotionImageProcessor.from_timm("test_resnet", crop_size=32)
    return _scaled(MemotionVisionForImageClassification(config)), processor


def _joint_member(family: str):
    text_config, tokenizer = build_tiny_text_backbone(family, CORPUS, hidden_size=16, num_layers=1)
    vision_class = CLIPVisionConfig if family == "clip" else SiglipVisionConfig
    vision_config = vision_class(**TOWER, image_size=32, patch_size=8)
    config = MemotionMultimodalConfig(
        vision_config=vision_config,
        text_config=text_config,
        problems=list(PROBLEM_NAMES),
        projection_dim=4,
        ffn_size=8,
    )
    feeding = TextFeeding.of_member(config)
    processor = MemotionMultimodalProcessor(
        image_processor_for(vision_config), tokenizer, max_length=feeding.max_length, pad_to=feeding.pad_to
    )
    return _scaled(MemotionMultimodalForClassification(config)), processor


#: Every member kind: name -> (family, builder).
MEMBERS = {
    "text_bert": ("text", lambda: _text_member("bert")),
    "text_clip": ("text", lambda: _text_member("clip")),
    "text_siglip": ("text", lambda: _text_member("siglip")),
    "vision": ("vision", _vision_member),
    "joint_clip": ("multimodal", lambda: _joint_member("clip")),
    "joint_siglip": ("multimodal", lambda: _joint_member("siglip")),
}


def _ensemble(names) -> MemotionEnsembleModel:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = {p: rng.integers(0, get_problem(p).num_labels, 60) for p in PROBLEM_NAMES}
    oof = {name: {p: rng.dirichlet(np.ones(get_problem(p).num_labels), 60) for p in PROBLEM_NAMES} for name in names}
    members = {name: MEMBERS[name][1]() for name in names}
    config = MemotionEnsembleConfig(
        problems=list(PROBLEM_NAMES),
        base_models=[
            {"name": name, "family": MEMBERS[name][0], "path": name, "problems": list(PROBLEM_NAMES)} for name in names
        ],
    )
    stackers = fit_stackers(oof, labels, candidates={p: ["logistic_regression"] for p in PROBLEM_NAMES})
    return MemotionEnsembleModel(config, base_models=members, stackers=stackers)


def _contexts():
    """The meme (image 0, ``MEME_TEXT``) alone, in a batch of 8, beside a much longer and a much shorter text."""
    meme = (_image(0), MEME_TEXT)
    others = [(_image(i + 1), text) for i, text in enumerate(OTHER_TEXTS)]
    return {
        "alone": ([meme], 0),
        "in a batch of 8": ([*others[:3], meme, *others[3:]], 3),
        "beside a longer text": ([(_image(9), LONG_TEXT), meme], 1),
        "beside a shorter text": ([meme, (_image(10), SHORT_TEXT)], 0),
    }


def _members_probabilities(ensemble: MemotionEnsembleModel, memes, index: int) -> dict[str, dict[str, np.ndarray]]:
    images, texts = zip(*memes, strict=True)
    found = ensemble.probabilities_from_inputs(ensemble.processor(list(images), list(texts), ten_crop=True))
    return {name: {p: v[index] for p, v in per.items()} for name, per in found.items()}


def test_siglip_towers_are_fed_padded_to_their_length_and_the_others_to_the_batch(tmp_path):
    siglip, tokenizer = _text_member("siglip")
    bert, _ = _text_member("bert")
    length = siglip.config.text_config.max_position_embeddings
    feeding = TextFeeding.of_member(siglip.config)
    assert feeding == TextFeeding(min(siglip.config.max_length, length), length)
    assert TextFeeding.of_member(bert.config) == TextFeeding(bert.config.max_length)
    assert feeding.collator(tokenizer)([tokenizer("lol")])["input_ids"].shape == (1, length)  # training batches too
    _, saved = _joint_member("siglip")
    saved.save_pretrained(tmp_path)
    processor = MemotionMultimodalProcessor.from_pretrained(tmp_path)  # the feeding travels with the processor
    assert (processor.max_length, processor.pad_to) == (feeding.max_length, length)
    batch = processor(images=[_image(0), _image(1)], text=[MEME_TEXT, SHORT_TEXT], ten_crop=False)
    assert batch["input_ids"].shape[1] == length  # as SigLIP's own model page asks: padding="max_length"
    assert batch["attention_mask"][1].sum() < length


def test_every_member_kind_answers_the_same_whatever_the_batch():
    ensemble = _ensemble(list(MEMBERS))
    contexts = _contexts()
    reference = _members_probabilities(ensemble, *contexts["alone"])
    for context, (memes, index) in contexts.items():
        found = _members_probabilities(ensemble, memes, index)
        for name, per in reference.items():
            difference = max(float(np.abs(per[p] - found[name][p]).max()) for p in per)
            assert difference < TOLERANCE, f"{name} {context}: its probabilities moved by {difference:.2e}"


def _served(pipe, memes, index: int, batch_size: int):
    answers = pipe([{"image": image, "text": text} for image, text in memes], batch_size=batch_size, return_base=True)
    return [answers[index]]


def _assert_served_alike(pipe):
    contexts = _contexts()
    alone = _served(pipe, *contexts["alone"], batch_size=1)
    for context, (memes, index) in contexts.items():
        difference = answers_difference(alone, _served(pipe, memes, index, batch_size=len(memes)))
        assert difference < TOLERANCE, f"{context}: the answer moved by {difference:.2e}"


def test_the_served_ensemble_answers_the_same_whatever_the_batch(tmp_path):
    _ensemble(list(MEMBERS)).save_pretrained(tmp_path / "ensemble")
    _assert_served_alike(pipeline("meme-emotion", model=str(tmp_path / "ensemble"), dtype=torch.float32))


def test_onnx_runtime_answers_the_same_whatever_the_batch(tmp_path):
    pytest.importorskip("onnxruntime")  # the `onnx` extra; `make test` installs it
    pytest.importorskip("skl2onnx")
    ensemble = _ensemble(["text_bert", "text_clip", "text_siglip", "vision"])  # joint members are not exported
    ensemble.save_pretrained(tmp_path / "pt")
    MemotionEnsembleModel.from_pretrained(tmp_path / "pt", dtype=torch.float32).export_onnx(tmp_path / "onnx")
    recorded = {m.name: m.pad_to for m in MemotionEnsembleConfig.from_pretrained(tmp_path / "onnx").members}
    assert recorded == {"text_bert": None, "text_clip": None, "text_siglip": 64, "vision": None}
    _assert_served_alike(pipeline("meme-emotion", model=str(tmp_path / "onnx"), backend="onnx"))


def test_explanations_serve_every_member_kind_and_a_siglip_text_member_by_its_shapley_share():
    """Integrated gradients walk the token embeddings, which SigLIP's text tower does not take: that member is
    explained by its Shapley share, the others by their words or heat maps, and nothing raises."""
    from hf_memotion.explaining.explanations import explain_memes

    ensemble = _ensemble(["text_bert", "text_siglip", "vision"])
    siglip = ensemble.base_models["text_siglip"]
    with pytest.raises(ValueError, match="reads token ids only, not inputs_embeds: pass input_ids"):
        siglip(inputs_embeds=torch.zeros(1, 3, 16))
    images, texts = [_image(0)], [MEME_TEXT]
    base = ensemble.base_probabilities(images, texts)
    answers = {p: v.argmax(-1) for p, v in ensemble.combine(base).items()}
    (explained,) = explain_memes(ensemble, images, texts, base, answers, steps=4)
    humour = explained["humour"]
    assert set(humour["words"]) == {"text_bert"} and set(humour["heatmaps"]) == {"vision"}
    assert set(humour["members"]) == {"text_bert", "text_siglip", "vision"}
