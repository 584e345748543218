"""Explanations: exact Shapley values over the members, Grad-CAM through hooks, integrated gradients over words,
the pipeline's ``explain=True``, and the faithfulness measures on the demo data."""

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
from hf_memotion.data import make_demo_data
from hf_memotion.ensemble import MemotionEnsembleModel
from hf_memotion.ensemble.configuration_memotion_ensemble import MemotionEnsembleConfig
from hf_memotion.ensemble.stacking import META_METHODS, fit_stackers
from hf_memotion.explaining import (
    ExplanationUnavailableError,
    SpatialActivationError,
    crop_box,
    grad_cam,
    member_shapley,
    spatial_layer,
    word_attributions,
)
from hf_memotion.explaining.faithfulness import cue_rank, cue_words, demo_faithfulness, quadrant_shares
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.models.vision import MemotionImageProcessor
from hf_memotion.pipelines import MemeEmotionPipeline
from hf_memotion.tasks import PROBLEM_NAMES

ROOT = Path(__file__).resolve().parents[1]


def _three_members(seed=0, n=240):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    good = np.eye(3)[y] * 0.7 + 0.1
    oof = {
        "a": {"p": good, "q": rng.dirichlet([1, 1], n)},
        "b": {"p": 0.5 * good + 0.5 * rng.dirichlet([1, 1, 1], n), "q": rng.dirichlet([1, 1], n)},
        "c": {"p": rng.dirichlet([1, 1, 1], n), "q": rng.dirichlet([1, 1], n)},
    }
    return oof, {"p": y, "q": rng.integers(0, 2, n)}


def _by_orderings(stacker, base, problem, answer):
    """Shapley values the slow way: the mean marginal contribution over every order of joining."""
    members = list(dict.fromkeys(b.partition(":")[0] for b in stacker.feature_order))

    def value(present):
        own, extra = {}, {}
        for block in stacker.feature_order:
            model, _, other = block.partition(":") if block not in stacker.model_order else (block, "", problem)
            values = base[model][other or problem]
            if model not in present:
                values = np.asarray(stacker.background[block])[None]
            (own if block in stacker.model_order else extra)[block] = values
        return stacker.predict_proba(own, extra)[0, answer]

    totals = dict.fromkeys(members, 0.0)
    for order in itertools.permutations(members):
        present = set()
        for member in order:
            before = value(present)
            present.add(member)
            totals[member] += value(present) - before
    return {m: v / math.factorial(len(members)) for m, v in totals.items()}


@pytest.mark.parametrize("method", META_METHODS)
@pytest.mark.parametrize("features", ["own", "all"])
def test_shapley_values_are_exact_and_add_up_for_every_meta_estimator(method, features):
    oof, labels = _three_members()
    stackers = fit_stackers(oof, labels, candidates=[method], features=features, calibration="temperature", cv=3)
    rng = np.random.default_rng(1)
    base = {m: {p: rng.dirichlet(np.ones(v.shape[1]), 5) for p, v in per.items()} for m, per in oof.items()}
    answers = {"p": np.array([0, 1, 2, 0, 1]), "q": np.array([1, 0, 1, 1, 0])}
    values = member_shapley(stackers, base, answers)
    for problem, c in values.items():
        served = stackers[problem].predict_proba(
            {m: base[m][problem] for m in stackers[problem].model_order},
            {b: base[b.partition(":")[0]][b.partition(":")[2]] for b in stackers[problem].feature_order if ":" in b},
        )[np.arange(5), answers[problem]]
        np.testing.assert_allclose(c.value, served, atol=1e-12)  # the served (calibrated) score
        np.testing.assert_allclose(c.baseline + sum(c.members.values()), c.value, atol=1e-9)  # efficiency
        for row in (0, 3):
            one = {m: {p: v[row : row + 1] for p, v in per.items()} for m, per in base.items()}
            slow = _by_orderings(stackers[problem], one, problem, answers[problem][row])
            for member, expected in slow.items():
                assert c.members[member][row] == pytest.approx(expected, abs=1e-9), (problem, member)


def test_shapley_values_give_identical_members_equal_shares_and_an_ignored_member_none():
    oof, labels = _three_members()
    oof["b"] = {p: v.copy() for p, v in oof["a"].items()}  # b is a copy of a
    stackers = fit_stackers(oof, labels, candidates=["soft_vote"])
    base = {"a": {"p": np.array([[0.8, 0.1, 0.1]])}, "c": {"p": np.array([[0.2, 0.3, 0.5]])}}
    base["b"] = base["a"]
    c = member_shapley(stackers, base, {"p": np.array([0])})["p"]
    assert c.members["a"][0] == pytest.approx(c.members["b"][0], abs=1e-12)
    at_background = {**base, "c": {"p": np.asarray(stackers["p"].background["c"])[None]}}
    assert member_shapley(stackers, at_background, {"p": np.array([0])})["p"].members["c"][0] == pytest.approx(0.0)
    assert c.by_modality({"a": "text", "b": "text", "c": "vision"})["text"][0] == pytest.approx(c.members["a"][0] * 2)


def test_the_background_is_saved_checked_and_missing_in_old_ensembles_means_uniform(tmp_path):
    ensemble = random_ensemble(ENSEMBLE_SIZES["demo"])
    ensemble.save_pretrained(tmp_path / "e")
    loaded = MemotionEnsembleModel.from_pretrained(tmp_path / "e", dtype="float32")
    for problem, stacker in ensemble.stackers.items():
        assert loaded.stackers[problem].background == stacker.background  # JSON keeps every float
        assert len(stacker.background["text"]) == stacker.num_classes
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    config["meta"]["humour"]["background"] = {"nobody": [0.5, 0.5]}
    with pytest.raises(ValueError, match=r"meta\['humour'\]: background must map feature blocks"):
        MemotionEnsembleConfig.from_dict(config)
    config["meta"]["humour"]["background"] = {}  # saved before backgrounds: a uniform answer stands in
    old = MemotionEnsembleConfig.from_dict(config)
    assert old.meta["humour"]["background"] == {}
    stacker = loaded.stackers["humour"]
    stacker.background = {}
    base = {"text": {"humour": np.array([[0.5, 0.5]])}, "vision": {"humour": np.array([[0.5, 0.5]])}}
    c = member_shapley({"humour": stacker}, base, {"humour": np.array([1])})["humour"]
    assert all(abs(v[0]) < 1e-12 for v in c.members.values())  # the inputs are the uniform background


class _RedNet(nn.Module):
    """A network whose "humour" logit is how red the image is on average (one channel of an identity map)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3)[:, :, None, None])
            self.features.bias.zero_()

    def forward(self, pixel_values):
        score = torch.relu(self.features(pixel_values))[:, 0].mean(dim=(1, 2))
        return SimpleNamespace(problem_logits={"humour": torch.stack([-score, score], dim=-1)})


def test_grad_cam_finds_the_feature_map_by_hooks_and_puts_the_heat_where_the_score_looks():
    model = _RedNet().eval()
    pixels = torch.rand(2, 3, 16, 16)
    pixels[:, 0] = 0.0
    pixels[:, 0, :8, :8] = 1.0  # red only in the top left; the other channels, which the score ignores, everywhere
    assert spatial_layer(model, pixels) == "features"
    maps = grad_cam(model, pixels, lambda out: {"funny": out.problem_logits["humour"][:, 1]})["funny"]
    assert maps.shape == (2, 16, 16) and maps.max() == pytest.approx(1.0)
    shares = np.array([quadrant_shares(m) for m in maps])
    assert (shares[:, 0, 0] > 0.9).all(), shares[:, 0, 0]
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with pytest.raises(SpatialActivationError, match="no module with an \\(N, C, H, W\\) output"):
        spatial_layer(_Wrapped(flat), pixels)
    with pytest.raises(SpatialActivationError, match="'nothing' is not a module"):
        grad_cam(model, pixels, lambda out: {}, layer="nothing")


class _Wrapped(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, pixel_values):
        return self.inner(pixel_values)


@pytest.mark.parametrize("size", [(96, 96), (80, 60), (60, 131), (301, 97)])
def test_the_heat_maps_box_is_where_the_evaluation_transform_crops(size):
    from torchvision.transforms import v2 as T

    processor = MemotionImageProcessor(crop_size=64, crop_pct=0.875)
    left, top, right, bottom = crop_box(size, processor.resize_size, processor.crop_size)
    marked = np.zeros((size[1], size[0]), dtype=np.uint8)
    marked[round(top) : round(bottom), round(left) : round(right)] = 255  # the box, in the image's pixels
    resized = T.Resize(processor.resize_size, antialias=True)(Image.fromarray(marked))
    cropped = np.asarray(T.CenterCrop(64)(resized))
    assert cropped[2:-2, 2:-2].min() == 255  # the box covers the crop the model sees...
    inside = int((np.asarray(resized) > 127).sum())
    assert abs(inside - 64 * 64) <= 4 * 64  # ...and no more than it (a pixel's rounding at each edge)


def _text_model(seed=0):
    torch.manual_seed(seed)
    backbone, tokenizer = build_tiny_text_backbone("bert", ["lol what a day hilarious"], hidden_size=16, num_layers=1)
    config = MemotionTextConfig(
        text_config=backbone, problems=["humour", "sentiment"], lstm_hidden_size=8, attention_size=8, ffn_size=8
    )
    return MemotionTextForSequenceClassification(config).eval(), tokenizer


def test_integrated_gradients_add_up_and_name_the_words_of_the_text():
    model, tokenizer = _text_model()
    text = "LOL what a zebra day"  # "zebra" is not in the vocabulary: one [UNK] word, still a word
    out = word_attributions(
        model, tokenizer, text, {"funny": ("humour", 1), "neg": ("sentiment", 0)}, max_length=16, steps=128
    )
    for attributions in out.values():
        assert [w for w, _ in attributions.words] == ["lol", "what", "a", "zebra", "day"]
        change = attributions.score - attributions.baseline_score
        total = sum(a for _, a in attributions.tokens)
        assert total + attributions.delta == pytest.approx(change, abs=1e-9)
        assert abs(attributions.delta) < 0.05 * max(abs(change), 1e-3) + 1e-4, (attributions.delta, change)
    truncated = word_attributions(model, tokenizer, "lol " * 40, {"funny": ("humour", 1)}, max_length=8)["funny"]
    assert len(truncated.words) == 6  # the words the model read: 8 tokens less [CLS] and [SEP]


def _pipe():
    return MemeEmotionPipeline(model=random_ensemble(ENSEMBLE_SIZES["demo"]), task="meme-emotion")


def test_the_pipeline_explains_every_answer_it_gives():
    pipe = _pipe()
    memes = [{"image": Image.new("RGB", (90, 70), (i * 40, 100, 0)), "text": f"lol monday exam {i}"} for i in range(3)]
    memes.insert(1, {"text": "no image"})
    plain = pipe(memes, batch_size=2, errors="return")
    explained = pipe(memes, batch_size=2, errors="return", explain=True)
    assert explained[1] == plain[1] and "error" in explained[1]
    for answer, reference in zip(explained, plain, strict=True):
        if "error" in answer:
            continue
        assert {k: v for k, v in answer.items() if k != "explanation"} == reference  # the same answers
        explanation = answer["explanation"]
        assert list(explanation) == list(PROBLEM_NAMES)
        assert explanation["sentiment"]["label"] == answer["sentiment"]["label"]
        for emotion, entry in answer["emotions"].items():
            assert explanation[f"{emotion}_intensity"]["label"] == entry["intensity"]  # joint decoding
            assert explanation[emotion]["score"] == pytest.approx(
                entry["score"] if entry["present"] else 1 - entry["score"],
                abs=1e-6,  # served in float32
            )
        for e in explanation.values():
            assert e["baseline"] + sum(e["members"].values()) == pytest.approx(e["score"], abs=1e-9)
            assert set(e["modalities"]) == {"text", "vision"}
            processor = pipe.model.preprocessors["vision"]
            assert e["heatmaps"]["vision"].shape == (processor.crop_size, processor.crop_size)
            assert e["regions"]["vision"] == list(crop_box((90, 70), processor.resize_size, processor.crop_size))
            assert [w for w, _ in e["words"]["text"]][:3] == ["lol", "monday", "exam"]
    one = pipe(memes[0], explain=True, decoding="independent")  # each problem's argmax, explained as served
    for emotion, entry in one["emotions"].items():
        assert one["explanation"][f"{emotion}_intensity"]["label"] == entry["intensity"]
        assert one["explanation"][f"{emotion}_intensity"]["label"] == max(
            entry["intensity_scores"], key=entry["intensity_scores"].get
        )


def test_an_int8_text_model_gets_a_clear_refusal(tmp_path):
    ensemble = random_ensemble(ENSEMBLE_SIZES["demo"])
    ensemble.save_pretrained(tmp_path / "e")
    quantized = MemotionEnsembleModel.from_pretrained(tmp_path / "e", dtype="float32", quantize_text=True)
    pipe = MemeEmotionPipeline(model=quantized, task="meme-emotion")
    with pytest.raises(ExplanationUnavailableError, match="without quantize_text=True"):
        pipe({"image": Image.new("RGB", (64, 64)), "text": "lol"}, explain=True)


def test_faithfulness_measures_score_known_attributions():
    top_left = np.zeros((10, 10))
    top_left[:5, :5] = 1.0
    np.testing.assert_allclose(quadrant_shares(top_left), [[1, 0], [0, 0]])
    np.testing.assert_allclose(quadrant_shares(np.ones((7, 9))).sum(), 1.0)
    assert quadrant_shares(np.zeros((4, 4))).sum() == 0.0
    assert cue_words("humour_intensity") == {"serious", "boring", "lol", "hilarious"}
    assert "love" in cue_words("sentiment")
    assert cue_rank([("the", 0.1), ("lol", -0.9), ("cat", 0.2)], {"lol"}) == (0.0, 3)  # by size
    assert cue_rank([("the", 0.5), ("lol", 0.1), ("cat", 0.9)], {"lol"}) == (1.0, 3)
    assert cue_rank([("the", 0.5), ("cat", 0.9)], {"lol"}) is None


def test_faithfulness_runs_end_to_end_on_demo_memes_and_the_script_writes_it(tmp_path):
    root = make_demo_data(tmp_path / "demo", n_train=4, n_test=3, seed=2)
    figures = demo_faithfulness(_pipe(), root, n_memes=3, batch_size=2)
    assert figures["memes"] == 3 and set(figures["visual"]) == {"vision"} and set(figures["textual"]) == {"text"}
    visual = figures["visual"]["vision"]
    for key in ("deletion_drop", "random_deletion_drop"):
        assert np.isfinite(visual[key])
    if visual["answers_measured"]:
        assert 0.0 <= visual["planted_share"] <= 1.0
    text = figures["textual"]["text"]
    assert text["cue_rank_chance"] == 0.5 and text["answers_measured"] > 0
    ensemble = random_ensemble(ENSEMBLE_SIZES["demo"])
    ensemble.save_pretrained(tmp_path / "ensemble")
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "explain.py"),
            str(tmp_path / "ensemble"),
            "--faithfulness",
            str(tmp_path / "nowhere"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and "has no memotion_test_release/" in run.stderr
    image = root / "memotion_test_release" / "2000_data"
    first = sorted(image.iterdir())[0]
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "explain.py"),
            str(tmp_path / "ensemble"),
            "--image",
            str(first),
            "--text",
            "lol monday",
            "--problem",
            "humour",
            "--out",
            str(tmp_path / "one"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "humour:" in run.stdout and (tmp_path / "one" / "heatmap_vision_humour.png").is_file()
    assert set(json.loads((tmp_path / "one" / "explanation.json").read_text())) == {"humour"}
