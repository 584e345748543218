"""The ensemble exported to ONNX and served by ONNX Runtime gives the PyTorch ensemble's answers: every
meta-estimator kind, the pipeline's options, the Hub layout by id, int8 gated by its held-out check."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")  # the `onnx` extra; `make test` installs it
pytest.importorskip("skl2onnx")

from transformers import pipeline

import hf_memotion  # noqa: F401
from conftest import build_tiny_ensemble
from hf_memotion.benchmarking import ENSEMBLE_SIZES, answers_difference, random_ensemble
from hf_memotion.data import load_memotion, make_demo_data
from hf_memotion.ensemble import MemotionEnsembleModel
from hf_memotion.ensemble.configuration_memotion_ensemble import MemotionEnsembleConfig
from hf_memotion.ensemble.onnx_graphs import estimator_graph, rule_graph
from hf_memotion.ensemble.onnx_runtime import OnnxMemotionEnsemble, resolve_onnx_precision
from hf_memotion.ensemble.stacking import ESTIMATORS, META_METHODS, RULES, _rule_proba
from hf_memotion.models.text.modeling_memotion_text import front_alignment

ROOT = Path(__file__).resolve().parents[1]


def _session(model):
    import onnxruntime

    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_front_alignment_is_the_stable_sort_it_replaces():
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        mask = torch.rand(3, 11, generator=generator) < torch.rand(1, generator=generator)
        order, inverse = front_alignment(mask)
        expected = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        assert torch.equal(order, expected) and torch.equal(inverse, torch.argsort(expected, dim=1))


@pytest.mark.parametrize("method", RULES)
def test_rule_graphs_compute_the_rules(method):
    rng = np.random.default_rng(0)
    blocks = [rng.dirichlet(np.ones(4), 50) for _ in range(3)]
    blocks[1][:5] = blocks[0][:5]  # ties for the hard vote
    extra = rng.random((50, 2))  # features="all": columns the rules do not read
    x = np.hstack([*blocks, extra])
    graph = rule_graph(method, models=3, classes=4, features=x.shape[1])
    found = _session(graph).run(None, {"X": x})[0]
    np.testing.assert_allclose(found, _rule_proba(method, blocks), atol=1e-12)


@pytest.mark.parametrize("method", sorted(ESTIMATORS))
def test_estimator_graphs_give_scikit_learns_probabilities(method):
    from sklearn.base import clone

    rng = np.random.default_rng(1)
    x = np.hstack([rng.dirichlet(np.ones(4), 300), rng.dirichlet(np.ones(4), 300)])
    y = rng.integers(0, 3, 300)  # class 3 of 4 never seen: its column is absent from the graph's output
    estimator = clone(ESTIMATORS[method]).fit(x, y)
    session = _session(estimator_graph(method, estimator, x.shape[1]))
    dtype = np.float64 if session.get_inputs()[0].type == "tensor(double)" else np.float32
    names = [o.name for o in session.get_outputs()]
    found = dict(zip(names, session.run(None, {"X": x.astype(dtype)}), strict=True))["probabilities"]
    np.testing.assert_allclose(found, estimator.predict_proba(x), atol=1e-5)


@pytest.fixture(scope="module")
def memes(demo_root):
    test = load_memotion(demo_root)["test"]
    return [{"image": row["image"], "text": row["text"]} for row in test.select(range(min(12, test.num_rows)))]


def _answers(pipe, memes, **options):
    return pipe(memes, batch_size=4, return_base=True, **options)


@pytest.mark.parametrize("method", META_METHODS)
def test_the_onnx_folder_gives_pytorchs_answers_for_every_meta_estimator(method, synthetic, memes, tmp_path):
    ensemble = build_tiny_ensemble(synthetic, methods=(method,))
    ensemble.save_pretrained(tmp_path / "pt")
    recorded = MemotionEnsembleModel.from_pretrained(tmp_path / "pt", dtype=torch.float32).export_onnx(tmp_path / "ox")
    assert max(recorded["max_difference"].values()) < 1e-4
    pt = pipeline("meme-emotion", model=str(tmp_path / "pt"), dtype=torch.float32)
    ox = pipeline("meme-emotion", model=str(tmp_path / "ox"), backend="onnx")
    assert isinstance(ox.model, OnnxMemotionEnsemble)
    for decoding in ("independent", "joint"):
        a, b = _answers(pt, memes, decoding=decoding), _answers(ox, memes, decoding=decoding)
        assert [r["submission"] for r in a] == [r["submission"] for r in b]  # the same answer.txt lines
        assert answers_difference(a, b) < 1e-4


def test_the_onnx_pipeline_keeps_the_options_and_the_schema(synthetic, memes, tmp_path):
    build_tiny_ensemble(synthetic).export_onnx(tmp_path / "ox")
    ox = pipeline("meme-emotion", model=str(tmp_path / "ox"))  # config.json says onnx: no backend needed
    pt = MemotionEnsembleModel.from_pretrained
    one = ox(memes[0], ten_crop=False)
    assert set(one) == {"sentiment", "emotions", "submission", "text", "text_source"}
    streamed = list(ox(iter(memes[:5]), batch_size=2))  # a generator: streamed
    assert [r["submission"] for r in streamed] == [r["submission"] for r in ox(memes[:5], batch_size=2)]
    mixed = ox([memes[0], {"text": "no image"}, memes[1]], errors="return")
    assert "error" in mixed[1] and "submission" in mixed[2]
    with pytest.raises(ValueError, match="explain=True needs gradients"):
        ox(memes[0], explain=True)
    build_tiny_ensemble(synthetic).save_pretrained(tmp_path / "pt")
    with pytest.raises(ValueError, match="holds a pytorch ensemble, not onnx: export it"):
        pt(tmp_path / "pt", backend="onnx")
    with pytest.raises(ValueError, match="holds a onnx ensemble, not pytorch"):
        pt(tmp_path / "ox", backend="pytorch")
    with pytest.raises(ValueError, match="but the model is a pytorch ensemble"):
        pipeline("meme-emotion", model=str(tmp_path / "pt"), backend="onnx")
    with pytest.raises(ValueError, match="no int8 graphs"):
        pt(tmp_path / "ox", dtype="int8")
    with pytest.raises(ValueError, match="runs in"):
        pt(tmp_path / "ox", dtype=torch.bfloat16)
    saved = tmp_path / "copy"
    ox.save_pretrained(saved)  # the folder as it is
    assert pipeline("meme-emotion", model=str(saved))(memes[0]) == ox(memes[0])


def test_export_refuses_what_it_cannot_export_faithfully(tmp_path):
    ensemble = random_ensemble(ENSEMBLE_SIZES["demo"])
    ensemble.base_models["vision"].to(torch.bfloat16)
    with pytest.raises(ValueError, match="export from fp32 weights"):
        ensemble.export_onnx(tmp_path / "ox")
    assert not (tmp_path / "ox").exists() and not list(tmp_path.iterdir())  # nothing half-written


def test_int8_graphs_are_served_only_when_their_held_out_check_passed(tmp_path):
    root = make_demo_data(tmp_path / "demo", n_train=16, n_test=24, seed=3)
    data = load_memotion(root)
    ensemble = random_ensemble(ENSEMBLE_SIZES["demo"])
    recorded = ensemble.export_onnx(
        tmp_path / "ox", int8=True, held_out=data["test"], calibration=data["train"]["image"][:8]
    )
    check = recorded["int8"]
    assert check["rows"] == 24 and set(check["macro_f1_change"]) == {"subtask_a", "subtask_b", "subtask_c"}
    assert check["quantization"]["vision"].startswith("static") and check["quantization"]["text"] == "dynamic"
    served = MemotionEnsembleModel.from_pretrained(tmp_path / "ox")
    assert served.precision == ("int8" if check["passed"] else "float32")
    assert MemotionEnsembleModel.from_pretrained(tmp_path / "ox", dtype="int8").precision == "int8"
    failed = MemotionEnsembleConfig(backend="onnx", onnx={"int8": {**check, "passed": False}})
    assert resolve_onnx_precision(failed)[0] == "float32"
    assert "failed the held-out check" in resolve_onnx_precision(failed)[1]
    assert check["speed"]["cpu"]["float32_s"] > 0 and check["speed"]["cpu"]["int8_s"] > 0
    slow = {**check, "passed": True, "speed": {"cpu": {"speedup": 0.8}}}
    choice = resolve_onnx_precision(MemotionEnsembleConfig(backend="onnx", onnx={"int8": slow}))
    assert choice[0] == "float32" and "not faster (0.80x" in choice[1]  # int8 is not faster everywhere
    fast = {**check, "passed": True, "speed": {"cpu": {"speedup": 1.6}}}
    choice = resolve_onnx_precision(MemotionEnsembleConfig(backend="onnx", onnx={"int8": fast}))
    assert choice == ("int8", "the int8 graphs passed the held-out check and ran at 1.60x fp32's speed")
    unchecked = random_ensemble(ENSEMBLE_SIZES["demo"]).export_onnx(tmp_path / "unchecked", int8=True)
    assert unchecked["int8"]["passed"] is False and "unchecked" in unchecked["int8"]["reason"]
    card = (tmp_path / "ox" / "README.md").read_text()
    assert "## Runtime: ONNX Runtime" in card and "onnx" in card.split("---")[1]


HUB_SIDE = """
import json
from PIL import Image
import numpy as np
from transformers import pipeline
import hf_memotion
image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
pipe = pipeline("meme-emotion", model="org/ensemble-onnx", backend="onnx")
print("OUTPUTS " + json.dumps(pipe({"image": image, "text": "lol monday"})["sentiment"]["scores"]))
"""


def test_the_exported_folder_round_trips_through_the_hub_layout_by_id(synthetic, tmp_path):
    from test_hub_round_trip import _publish_to_cache

    build_tiny_ensemble(synthetic).export_onnx(tmp_path / "ox")
    planned = _publish_to_cache(tmp_path / "ox", tmp_path / "hub", "org/ensemble-onnx")
    assert {"config.json", "README.md", "text/model.onnx", "vision/model.onnx", "text/tokenizer.json"} <= set(planned)
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HOME": str(tmp_path / "home"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    out = subprocess.run([sys.executable, "-c", HUB_SIDE], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    hub = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("OUTPUTS "))[8:])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    local = pipeline("meme-emotion", model=str(tmp_path / "ox"))({"image": image, "text": "lol monday"})
    assert hub == pytest.approx(local["sentiment"]["scores"], abs=1e-9)


@pytest.mark.slow
def test_the_export_script_writes_the_folder_and_refuses_bad_input(tmp_path):
    random_ensemble(ENSEMBLE_SIZES["demo"]).save_pretrained(tmp_path / "pt")
    script = [sys.executable, str(ROOT / "scripts" / "export_onnx.py")]
    done = subprocess.run([*script, str(tmp_path / "pt"), str(tmp_path / "ox")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "largest probability difference from PyTorch" in done.stdout and (tmp_path / "ox" / "config.json").exists()
    again = subprocess.run([*script, str(tmp_path / "ox"), str(tmp_path / "twice")], capture_output=True, text=True)
    assert again.returncode != 0 and "already an ONNX folder" in again.stderr
    lonely = subprocess.run(
        [*script, str(tmp_path / "pt"), str(tmp_path / "x"), "--held-out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert lonely.returncode != 0 and "give --int8 too" in lonely.stderr
