"""The measuring tools behind benchmarks/bench.py, and the inference optimisations they measure: the batched,
channels-last, shared-preprocessing path gives the naive baseline's outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_memotion.benchmarking import (
    ENSEMBLE_SIZES,
    BenchmarkEnsemble,
    Timing,
    count_flops,
    max_difference,
    naive_base_probabilities,
    random_ensemble,
    sample_memes,
    set_channels_last,
    weights_bytes,
)
from hf_memotion.tasks import PROBLEM_NAMES

ROOT = Path(__file__).resolve().parents[1]
TWO_VISION = BenchmarkEnsemble(
    text=(("text", "bert", 16, 1, 2, 0),), vision=(("a", "test_resnet"), ("b", "test_resnet")), crop_size=32
)


def test_flops_are_counted_like_the_textbook():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(lambda: conv(torch.zeros(2, 3, 10, 10))) == 2 * (2 * 8 * 10 * 10) * (3 * 3 * 3)
    timing = Timing([3.0, 1.0, 2.0])
    assert timing.p50 == 2.0 and timing.p95 == 3.0 and timing.as_dict()["n"] == 3


@pytest.mark.parametrize("layout", ["multitask", "per_problem"])
def test_batched_channels_last_path_equals_the_naive_baseline(layout):
    ensemble = random_ensemble(ENSEMBLE_SIZES["demo"], layout=layout)
    images, texts = sample_memes(3, size=96)
    set_channels_last(ensemble, False)
    naive = ensemble.combine(naive_base_probabilities(ensemble, images, texts))
    set_channels_last(ensemble, True)
    ours = ensemble.combine(ensemble.base_probabilities(images, texts))
    assert set(ours) == set(PROBLEM_NAMES)
    assert max_difference(ours, naive) < 1e-4
    expected_models = 2 if layout == "multitask" else 18
    assert len(ensemble.config.base_models) == expected_models


def test_models_with_the_same_preprocessing_share_one_tensor(monkeypatch):
    ensemble = random_ensemble(TWO_VISION)
    processor = ensemble.preprocessors["a"]
    assert ensemble.preprocessors["b"].to_dict() == processor.to_dict()
    calls = []
    original = type(processor).__call__

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(processor), "__call__", counting)
    images, texts = sample_memes(2, size=64)
    probabilities = ensemble.base_probabilities(images, texts)
    assert len(calls) == 1 and set(probabilities) == {"text", "a", "b"}
    assert weights_bytes(ensemble) > 0


def test_int8_text_backbones_keep_the_predictions_close(saved_ensemble):
    from hf_memotion.ensemble import MemotionEnsembleModel

    images, texts = sample_memes(4, size=64)
    fp32 = MemotionEnsembleModel.from_pretrained(saved_ensemble)
    int8 = MemotionEnsembleModel.from_pretrained(saved_ensemble, quantize_text=True)
    assert int8.base_models["text"].quantized and not getattr(fp32.base_models["text"], "quantized", False)
    assert int8.base_models["vision"].channels_last
    a, b = fp32.base_probabilities(images, texts)["text"], int8.base_probabilities(images, texts)["text"]
    assert max(float(np.abs(a[p] - b[p]).max()) for p in a) < 0.05


@pytest.mark.slow
def test_the_benchmark_script_prints_its_tables(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            "--sections",
            "pipeline",
            "memory",
            "--sizes",
            "demo",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "## pipeline, demo ensemble" in result.stdout and "memory, demo" in result.stdout
    report = json.loads(out.read_text())
    assert report["pipeline"][0]["max_abs_difference"] < 1e-4 and report["matmul"] > 0
    assert report["memory"]["demo"]["peak_mb"] > report["memory"]["demo"]["baseline_mb"]
