import io
import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import skops.io as sio
from PIL import Image
from transformers import pipeline

import hf_memotion  # noqa: F401  (registers the meme-emotion task)
from conftest import build_tiny_ensemble
from hf_memotion.ensemble import (
    MemotionEnsembleModel,
    ProblemStacker,
    UnsafeModelFolderError,
    fit_stackers,
)
from hf_memotion.ensemble.stacking import load_estimator
from hf_memotion.pipelines import MemeInputError
from hf_memotion.tasks import PROBLEM_NAMES, decode_submission, get_problem

N = 120  # rows of the session's `synthetic` out-of-fold probabilities (conftest)


def test_stacker_chooses_by_cross_validated_macro_f1_and_can_be_fixed(synthetic):
    oof, labels = synthetic
    rng = np.random.default_rng(1)
    y = labels["humour"]
    own = {"good": np.eye(2)[y] * 0.8 + 0.1, "noise": rng.dirichlet([1, 1], N)}
    stacker = ProblemStacker(["soft_vote", "logistic_regression", "decision_tree"]).fit(own, y)
    assert set(stacker.scores) == {"soft_vote", "logistic_regression", "decision_tree"}
    assert stacker.method == max(stacker.scores, key=stacker.scores.get)
    assert stacker.scores["logistic_regression"] > 0.9  # learns to trust the good model
    fixed = ProblemStacker(["hard_vote"]).fit(own, y)
    assert fixed.method == "hard_vote" and fixed.estimator is None
    with pytest.raises(ValueError, match="unknown meta-estimator"):
        ProblemStacker(["svm"])
    stackers = fit_stackers(
        oof, labels, candidates={**{p: ["average"] for p in PROBLEM_NAMES}, "humour": ["random_forest"]}
    )
    assert stackers["humour"].method == "random_forest" and stackers["sentiment"].method == "average"
    every = fit_stackers(oof, labels, candidates=["logistic_regression"], features="all")
    assert len(every["sentiment"].feature_order) == 2 + 2 * 8  # own blocks + every other problem of both models


def test_rules_combine_as_documented():
    from hf_memotion.ensemble.stacking import _rule_proba

    a, b, c = np.array([[0.6, 0.4]]), np.array([[0.2, 0.8]]), np.array([[0.55, 0.45]])
    np.testing.assert_allclose(_rule_proba("soft_vote", [a, b]), [[0.4, 0.6]])
    geometric = np.sqrt(a * b) / np.sqrt(a * b).sum()
    np.testing.assert_allclose(_rule_proba("average", [a, b]), geometric)
    assert _rule_proba("hard_vote", [a, b, c]).argmax() == 0  # two of three vote class 0


def _png(colour=(200, 30, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_saved_ensemble_has_the_documented_layout(saved_ensemble):
    config = json.loads((saved_ensemble / "config.json").read_text())
    assert config["model_type"] == "memotion_ensemble"
    assert [m["name"] for m in config["base_models"]] == ["text", "vision"]
    assert (saved_ensemble / "text" / "model.safetensors").is_file()
    assert (saved_ensemble / "vision" / "preprocessor_config.json").is_file()
    skops_files = sorted(p.name for p in (saved_ensemble / "meta").iterdir())
    assert skops_files and all(name.endswith(".skops") for name in skops_files)
    assert config["meta"]["humour_intensity"]["file"] is None or config["meta"]["humour_intensity"]["method"]


def test_pipeline_returns_the_schema_for_one_meme_and_a_batch(saved_ensemble, tmp_path):
    pipe = pipeline("meme-emotion", model=str(saved_ensemble))
    image_path = tmp_path / "meme.png"
    image_path.write_bytes(_png())
    one = pipe({"image": str(image_path), "text": "WHEN THE EXAM IS ON MONDAY"})
    assert set(one) == {"sentiment", "emotions", "submission", "text", "text_source"}
    assert (one["text"], one["text_source"]) == ("WHEN THE EXAM IS ON MONDAY", "given")
    assert one["sentiment"]["label"] in ("negative", "neutral", "positive")
    assert sum(one["sentiment"]["scores"].values()) == pytest.approx(1.0)
    assert set(one["emotions"]) == {"humour", "sarcasm", "offensive", "motivational"}
    humour = one["emotions"]["humour"]
    assert set(humour) == {"present", "score", "intensity", "intensity_scores"}
    assert set(humour["intensity_scores"]) == {"not_funny", "funny", "very_funny", "hilarious"}
    labels = decode_submission(one["submission"])
    assert get_problem("sentiment").labels[labels["sentiment"]] == one["sentiment"]["label"]
    memes = [{"image": Image.new("RGB", (60, 60), (i * 20, 0, 0)), "text": f"meme {i}"} for i in range(5)]
    memes.append({"image": np.zeros((40, 40, 3), dtype=np.uint8), "text": ""})
    batch = pipe(memes, batch_size=4)
    assert len(batch) == 6 and all("submission" in r for r in batch)
    one_by_one = pipe(memes, batch_size=1)  # batching does not change results (up to float rounding)
    assert [r["submission"] for r in one_by_one] == [r["submission"] for r in batch]
    for a, b in zip(one_by_one, batch, strict=True):
        assert a["sentiment"]["scores"] == pytest.approx(b["sentiment"]["scores"], abs=1e-5)
    detailed = pipe(memes[0], return_base=True, ten_crop=False)
    assert set(detailed["base"]) == {"text", "vision"} and set(detailed["modalities"]) == {"text", "vision"}


def test_pipeline_errors_name_the_item(saved_ensemble):
    pipe = pipeline("meme-emotion", model=str(saved_ensemble))
    with pytest.raises(MemeInputError, match="meme 1 lacks image"):
        pipe([{"image": _png(), "text": "ok"}, {"text": "no image"}])
    with pytest.raises(MemeInputError, match="meme 0 lacks text"):
        pipe({"image": _png()}, ocr=False)
    with pytest.raises(MemeInputError, match="meme 0: .*not a readable image"):
        pipe({"image": b"garbage bytes", "text": "x"})
    with pytest.raises(MemeInputError, match="'text' must be a string, got int"):
        pipe({"image": _png(), "text": 5})
    with pytest.raises(MemeInputError, match="not a str"):
        pipe("just a string")


def test_pipeline_works_in_a_fresh_process(saved_ensemble):
    code = textwrap.dedent(f"""
        import io, json
        from PIL import Image
        from transformers import pipeline
        import hf_memotion
        pipe = pipeline("meme-emotion", model={str(saved_ensemble)!r})
        print(json.dumps(pipe({{"image": Image.new("RGB", (32, 32)), "text": "lol"}})))
    """)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert json.loads(out.strip().splitlines()[-1])["submission"]


class _Exploit:
    def __reduce__(self):
        return (open, ("/tmp/hf_memotion_pwned", "w"))


def test_a_planted_pickle_is_refused_and_never_executed(synthetic, tmp_path):
    import shutil
    from pathlib import Path

    marker = Path("/tmp/hf_memotion_pwned")
    marker.unlink(missing_ok=True)
    folder = tmp_path / "ensemble"
    build_tiny_ensemble(synthetic).save_pretrained(folder)
    (folder / "meta" / "sentiment.pkl").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(UnsafeModelFolderError, match=r"meta/sentiment.pkl"):
        MemotionEnsembleModel.from_pretrained(folder)
    with pytest.raises(ValueError, match="pickle-based files"):  # pipeline() wraps the loader's error
        pipeline("meme-emotion", model=str(folder))
    assert not marker.exists()
    (folder / "meta" / "sentiment.pkl").unlink()
    shutil.copy(folder / "text" / "model.safetensors", folder / "text" / "pytorch_model.bin")
    with pytest.raises(UnsafeModelFolderError, match="pytorch_model.bin"):
        MemotionEnsembleModel.from_pretrained(folder)


def test_a_skops_file_with_untrusted_types_is_refused(synthetic, tmp_path):
    folder = tmp_path / "ensemble"
    build_tiny_ensemble(synthetic).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    target = next(p for p, m in config["meta"].items() if m["file"])
    rogue = _voting()  # holds sklearn.utils._bunch.Bunch: a type outside the reviewed list
    (folder / config["meta"][target]["file"]).write_bytes(sio.dumps(rogue))
    with pytest.raises(ValueError, match="outside hf-memotion's reviewed list"):
        MemotionEnsembleModel.from_pretrained(folder)
    with pytest.raises(ValueError, match="reviewed list"):
        load_estimator(sio.dumps(rogue), source="x.skops")


def _voting():
    from sklearn.ensemble import VotingClassifier
    from sklearn.linear_model import LogisticRegression

    voting = VotingClassifier([("a", LogisticRegression()), ("b", LogisticRegression(C=0.1))], voting="soft")
    assert "sklearn.utils._bunch.Bunch" in sio.get_untrusted_types(
        data=sio.dumps(voting.fit(np.random.rand(10, 2), [0, 1] * 5))
    )
    return voting


@pytest.mark.slow
def test_predict_script_prints_the_schema(saved_ensemble, tmp_path):
    from pathlib import Path

    image = tmp_path / "meme.png"
    image.write_bytes(_png())
    script = Path(__file__).resolve().parents[1] / "scripts" / "predict.py"
    out = subprocess.run(
        [sys.executable, str(script), str(saved_ensemble), "--image", str(image), "--text", "lol", "--no-ten-crop"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"submission"' in out and '"sentiment"' in out and "device: cpu" in out
    import torch

    if not torch.cuda.is_available():  # a device this machine does not have: one line naming it
        gpu = subprocess.run(
            [sys.executable, str(script), str(saved_ensemble), "--image", str(image), "--text", "x", "--device=cuda"],
            capture_output=True,
            text=True,
        )
        assert gpu.returncode != 0 and "device 'cuda': torch sees no CUDA device" in gpu.stderr
    bad = subprocess.run(
        [sys.executable, str(script), str(saved_ensemble), "--image", str(tmp_path / "nope.png"), "--text", "x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "nope.png" in bad.stderr
    # --image alone: that meme, its text read off the image (never the demo meme in its place)
    alone = subprocess.run(
        [sys.executable, str(script), str(saved_ensemble), "--image", str(image), "--no-ten-crop"],
        capture_output=True,
        text=True,
    )
    if alone.returncode == 0:
        assert f"meme: {image} " in alone.stdout and "(ocr)" in alone.stdout and '"text_source": "ocr"' in alone.stdout
    else:  # no Tesseract here: the message says so
        assert "tesseract" in alone.stderr.lower(), alone.stderr
    text_only = subprocess.run(
        [sys.executable, str(script), str(saved_ensemble), "--text", "x"], capture_output=True, text=True
    )
    assert text_only.returncode != 0 and "--text needs --image" in text_only.stderr


def test_per_problem_layout_expands_to_one_model_per_problem():
    from hf_memotion.families import expand_models
    from hf_memotion.recipe.specs import EnsembleRunSpec

    per_problem = {"name": "bert", "family": "text", "layout": "per_problem", "problems": ["humour", "sentiment"]}
    spec = EnsembleRunSpec.from_dict({"models": [per_problem, {"name": "cnn", "family": "vision"}]})
    models = expand_models(spec.models)
    assert [m.name for m in models] == ["bert-humour", "bert-sentiment", "cnn"]
    assert models[0].problems == ["humour"] and models[2].problems == list(PROBLEM_NAMES)
    assert {m.group for m in models} == {"bert", "cnn"} and models[2].spec.family == "vision"
    with pytest.raises(ValueError, match="section 'models.0': unknown key 'epochs'"):
        EnsembleRunSpec.from_dict({"models": [{"name": "x", "family": "text", "epochs": 3}]})


def test_pipeline_loads_an_ensemble_by_hub_id_from_the_cache(saved_ensemble, tmp_path):
    import shutil

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--memotion-org--demo-ensemble"
    shutil.copytree(saved_ensemble, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    code = textwrap.dedent("""
        from PIL import Image
        from transformers import pipeline
        import hf_memotion
        pipe = pipeline("meme-emotion", model="memotion-org/demo-ensemble")
        print(pipe({"image": Image.new("RGB", (32, 32)), "text": "lol"})["submission"])
    """)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    decode_submission(out.stdout.strip().splitlines()[-1])


def test_a_base_model_can_be_a_hub_id_pinned_to_a_revision(saved_ensemble, tmp_path):
    import shutil

    revision = "fedcba9876543210fedcba9876543210fedcba98"
    hub = tmp_path / "hub"
    shutil.copytree(saved_ensemble / "text", hub / "models--memotion-org--text-base" / "snapshots" / revision)
    ensemble = tmp_path / "ensemble"
    shutil.copytree(saved_ensemble, ensemble, ignore=shutil.ignore_patterns("text"))
    config = json.loads((ensemble / "config.json").read_text())
    config["base_models"][0].update(path="memotion-org/text-base", revision=revision)
    (ensemble / "config.json").write_text(json.dumps(config))
    code = textwrap.dedent(f"""
        from PIL import Image
        from transformers import pipeline
        import hf_memotion
        pipe = pipeline("meme-emotion", model={str(ensemble)!r})
        print(pipe({{"image": Image.new("RGB", (32, 32)), "text": "lol"}})["submission"])
    """)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    decode_submission(out.stdout.strip().splitlines()[-1])
    config["base_models"][0]["revision"] = None  # unpinned and not in the folder: a clear error
    (ensemble / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="needs a pinned revision"):
        MemotionEnsembleModel.from_pretrained(ensemble)


def test_a_problem_reading_another_s_probabilities_and_labels_takes_its_meta_estimator():
    """Table 8: under share_motivational, subtask C's motivational reads B's probabilities with B's labels: one
    meta-estimator chosen for both (a second selection on the same data could only differ by its folds); where the
    labels differ, each problem's method is its own choice."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    noisy = {m: np.eye(2)[np.where(rng.random(120) < 0.7, y, 1 - y)] * 0.6 + 0.2 for m in ("a", "b", "c")}
    probabilities = {m: {"motivational": v, "motivational_intensity": v} for m, v in noisy.items()}
    methods = ["average", "soft_vote", "hard_vote", "logistic_regression", "decision_tree", "random_forest"]
    shared = {"motivational_intensity": "motivational"}
    labels = {"motivational": y, "motivational_intensity": y}
    one = fit_stackers(probabilities, labels, candidates=methods, shared=shared)
    assert one["motivational_intensity"] is one["motivational"]
    assert list(one) == ["motivational", "motivational_intensity"]
    flipped = np.where(rng.random(120) < 0.3, 1 - y, y)  # other labels: a genuinely separate choice
    labels = {"motivational_intensity": flipped, "motivational": y}
    two = fit_stackers(probabilities, labels, candidates=methods, shared=shared)
    assert two["motivational_intensity"] is not two["motivational"]
    assert list(two) == ["motivational_intensity", "motivational"]  # the labels' order kept
    assert two["motivational"].method == one["motivational"].method  # the same data, the same choice


def test_the_recipe_s_stacking_shares_motivational_s_meta_estimator_only_where_every_member_shares_it():
    """StackingSpec.fit, as the recipe calls it under share_motivational: one stacker for B's and C's motivational
    when every member serves C's from B's probabilities (the paper's per-problem layout), two choices otherwise."""
    from hf_memotion.ensemble.stacking import with_aliases
    from hf_memotion.recipe.specs import StackingSpec

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 90)
    labels = {"motivational": y, "motivational_intensity": y}

    def member():
        return {"motivational": np.eye(2)[np.where(rng.random(90) < 0.7, y, 1 - y)] * 0.6 + 0.2}

    aliases = {"motivational_intensity": "motivational"}
    shared = {m: with_aliases(member(), aliases) for m in ("bert", "cnn")}  # both per problem, C served from B
    spec = StackingSpec(methods=["average", "logistic_regression", "decision_tree"], cv=3, calibration="none")
    one = spec.fit(shared, labels, seed=0, shared=True)
    assert one["motivational_intensity"] is one["motivational"]
    apart = {**shared, "joint": {**member(), "motivational_intensity": member()["motivational"]}}  # a head of its own
    two = spec.fit(apart, labels, seed=0, shared=True)
    assert two["motivational_intensity"] is not two["motivational"]
    three = spec.fit(shared, labels, seed=0, shared=False)  # motivational trained per subtask: chosen per subtask
    assert three["motivational_intensity"] is not three["motivational"]


def test_table8_says_when_one_choice_serves_two_subtasks():
    from hf_memotion.reporting.ensemble_report import render_report

    report = {
        "n_test": 4,
        "n_train": 8,
        "table7": [],
        "table8": {"motivational": "svm", "motivational_intensity": "svm"},
        "table8_shared": {"motivational_intensity": "motivational"},
        "protocol": {"share_motivational": True},
    }
    text = render_report(report, [])
    assert "| motivational | svm |" in text
    assert "| motivational_intensity | svm (the motivational choice" in text
    assert "one meta-estimator chosen for both" in text


def test_table7_says_what_each_single_model_row_scored():
    from hf_memotion.reporting.ensemble_report import render_report

    def report(*scored):
        rows = [{"name": f"m{i}", "scores": {"subtask_a": 0.4}, "scored": kind} for i, kind in enumerate(scored)]
        rows.append({"name": "ensemble all (modality ensemble)", "scores": {"subtask_a": 0.5}})
        return render_report({"n_test": 4, "n_train": 8, "table7": rows, "table8": {}, "protocol": {"test_time": "x"}})

    assert "each single-model row is its refit model, scored as one model" in report("refit", "refit")
    assert "each single-model row is the mean of its fold models" in report("fold_mean", "fold_mean")
    mixed = report("refit", "fold_mean")
    assert "m0, its refit model, scored as one model; m1, the mean of its fold models" in mixed
