#!/usr/bin/env python
"""Benchmark suite: the meme-emotion pipeline against a naive baseline, layouts, GFLOP/s, int8, memory, training.

Usage:
    python benchmarks/bench.py                                  # every section, demo and space sizes
    python benchmarks/bench.py --sizes demo space paper         # + the paper's eight backbones (long: ~20 min)
    python benchmarks/bench.py --sections pipeline memory --output bench.json

Every ratio is against a baseline measured in the same run on the same inputs:

- ``matmul``: the yardsticks. The machine's theoretical peak (cores x FLOP per cycle x clock, from its detected
  features: :mod:`hf_memotion.hardware`) and the best measured kernel per dtype (fp32 and bf16 matmul, oneDNN
  convolution: :func:`hf_memotion.benchmarking.best_kernels`); achieved GFLOP/s below are given against the dense
  fp32 matmul of 2048^3 (``of matmul``, kept for comparison with earlier runs), the best fp32 kernel and the
  fp32 peak.
- ``pipeline`` (per size): memes/s and latency p50/p95 at batch 1 and 8 of ``pipeline("meme-emotion")`` vs
  the naive baseline (each model on its own per meme, ten crops as ten forwards, eager, default memory
  format), with the largest output difference; what transformers' Pipeline machinery costs (batch 8 through
  the pipeline vs the same batch through ``MemotionEnsembleModel.predict_proba``); GFLOP/s of each backbone
  and of the whole pipeline.
- ``layout``: the paper's one-model-per-problem layout vs the multi-task layout (space size), seconds per
  meme, and the demo-data macro-F1 of each (from ``outputs/demo`` and ``outputs/demo_per_problem`` reports;
  ``--train-layouts`` trains what is missing, resumably).
- ``int8``: dynamic int8 text backbones: speed of a BERT-base text model, macro-F1 change of the trained
  demo ensemble (``outputs/demo/ensemble``, trained first with ``--train-layouts`` when missing).
- ``memory`` (per size): peak RSS of a fresh process building and running the ensemble, against its weights.
- ``training``: samples/s of a text and a visual base model with ``fit_classifier`` (Trainer) vs a plain loop.
- ``onnx`` (per size): memes/s at batch 8 and batch-1 p50 of the pipeline on PyTorch fp32, PyTorch
  ``dtype="auto"`` (with a held-out bf16 check), ONNX Runtime fp32 and int8 (the exported folder), interleaved,
  with the largest probability difference from PyTorch fp32; and, from the trained demo ensemble
  (``outputs/demo/ensemble``), the held-out macro-F1 change of its int8 graphs both ways (static visual + dynamic
  text, and dynamic for both) and what ``dtype="auto"`` serves for each.
- ``explain`` (per size): what ``explain=True`` costs, as a multiple of the same plain call (batch 1 p50 and
  memes/s at batch 8, interleaved): each answer's Shapley shares, Grad-CAM maps and word attributions.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_memotion.benchmarking import (
    ENSEMBLE_SIZES,
    answers_difference,
    best_kernels,
    count_flops,
    matmul_gflops,
    max_difference,
    naive_base_probabilities,
    peak_rss_bytes,
    random_ensemble,
    sample_memes,
    set_channels_last,
    time_calls,
    time_interleaved,
    weights_bytes,
)
from hf_memotion.families.inputs import ImageInput, TextInput
from hf_memotion.hardware import cpu_name, native_bf16, theoretical_peak
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.models.onednn_linear import use_onednn_linear

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("matmul", "pipeline", "dtype", "layout", "int8", "memory", "training", "explain", "onnx")
REPEATS = {"demo": 10, "space": 5, "paper": 1}


def _pipeline(ensemble):
    from hf_memotion.pipelines import MemeEmotionPipeline

    return MemeEmotionPipeline(model=ensemble, task="meme-emotion")


def bench_pipeline(size: str, matmul: float, batch: int = 8) -> dict[str, Any]:
    """Ours vs the naive baseline on one ensemble size, plus achieved GFLOP/s."""
    ensemble = random_ensemble(ENSEMBLE_SIZES[size])
    images, texts = sample_memes(batch, seed=1)
    memes = [{"image": i, "text": t} for i, t in zip(images, texts, strict=True)]
    repeats = REPEATS[size]
    # the baseline: default memory format, one model / one meme / one crop per forward
    set_channels_last(ensemble, False)
    naive_base: dict = {}
    naive_time = time_calls(lambda: naive_base.update(naive_base_probabilities(ensemble, images, texts)), repeats)
    naive_final = ensemble.combine(naive_base)
    naive_one = time_calls(lambda: naive_base_probabilities(ensemble, images[:1], texts[:1]), repeats)
    # ours: what pipeline("meme-emotion") loads (channels-last, images per call kept small), batched
    ensemble.optimize_for_inference()
    pipe = _pipeline(ensemble)
    ours_batch = time_calls(lambda: pipe(memes, batch_size=batch), repeats)
    # the same batch straight through the model (no Pipeline machinery: no DataLoader, per-meme preprocessing,
    # collation or unbatching): what the pipeline's machinery costs
    direct_batch = time_calls(lambda: ensemble.predict_proba(images, texts), repeats)
    ours_one = time_calls(lambda: pipe(memes[0]), max(repeats, 3) if size != "paper" else 1)
    ours_final = ensemble.combine(ensemble.base_probabilities(images, texts))
    flops = count_flops(lambda: ensemble.base_probabilities(images, texts))
    backbones = []
    for entry in ensemble.config.members:
        model = ensemble.base_models[entry.name]
        (single,) = ensemble.processor.inputs_of(entry.name)  # the benchmark's members read one input each
        if isinstance(single, ImageInput):
            inputs = single.encode(images[:1], None, ten_crop=True)  # one meme: ten crops in one forward
            what = "1 meme x 10 crops"
        else:
            inputs = single.encode(None, texts, ten_crop=False)
            what = f"{batch} texts"
        with torch.inference_mode():
            forward_flops = count_flops(lambda m=model, x=inputs: m(**x))
            seconds = time_calls(lambda m=model, x=inputs: m(**x), max(repeats, 2)).p50
        gflops = forward_flops / seconds / 1e9
        backbones.append(
            {
                "model": entry.name,
                "family": entry.family,
                "input": what,
                "gflop": forward_flops / 1e9,
                "seconds": seconds,
                "gflops": gflops,
                "of_matmul": gflops / matmul,
            }
        )
        if isinstance(single, TextInput) and use_onednn_linear(model, enabled=False):  # the stock (MKL) fp32 path
            with torch.inference_mode():
                stock = time_calls(lambda m=model, x=inputs: m(**x), max(repeats, 2)).p50
            use_onednn_linear(model)
            backbones.append(
                {
                    "model": f"{entry.name} (stock nn.Linear)",
                    "family": "text (stock)",
                    "input": what,
                    "gflop": forward_flops / 1e9,
                    "seconds": stock,
                    "gflops": forward_flops / stock / 1e9,
                    "of_matmul": forward_flops / stock / 1e9 / matmul,
                }
            )
    pipeline_gflops = flops / ours_batch.p50 / 1e9
    return {
        "size": size,
        "batch": batch,
        "naive_batch": naive_time.as_dict(),
        "naive_one": naive_one.as_dict(),
        "ours_batch": ours_batch.as_dict(),
        "ours_one": ours_one.as_dict(),
        "direct_batch": direct_batch.as_dict(),
        "machinery_cost": ours_batch.p50 / direct_batch.p50,
        "memes_per_s": {"ours": batch / ours_batch.p50, "naive": batch / naive_time.p50},
        "speedup_batch": naive_time.p50 / ours_batch.p50,
        "speedup_one": naive_one.p50 / ours_one.p50,
        "max_abs_difference": max_difference(ours_final, naive_final),
        "pipeline_gflop": flops / 1e9,
        "pipeline_gflops": pipeline_gflops,
        "pipeline_of_matmul": pipeline_gflops / matmul,
        "backbones": backbones,
        "text_over_vision_gflops": _text_over_vision(backbones),
    }


def bench_explain(size: str, batch: int = 8) -> dict[str, Any]:
    """A plain pipeline call against the same call with ``explain=True``, interleaved, on one ensemble size."""
    ensemble = random_ensemble(ENSEMBLE_SIZES[size])
    ensemble.optimize_for_inference()
    pipe = _pipeline(ensemble)
    images, texts = sample_memes(batch, seed=1)
    memes = [{"image": i, "text": t} for i, t in zip(images, texts, strict=True)]
    repeats = {"demo": 10, "space": 3, "paper": 1}[size]
    one = time_interleaved(
        {"plain": lambda: pipe(memes[0]), "explain": lambda: pipe(memes[0], explain=True)}, repeats=repeats
    )
    many = time_interleaved(
        {
            "plain": lambda: pipe(memes, batch_size=batch),
            "explain": lambda: pipe(memes, batch_size=batch, explain=True),
        },
        repeats=max(1, repeats // 2),
    )
    return {
        "size": size,
        "plain_batch1_p50_s": one["plain"].p50,
        "explain_batch1_p50_s": one["explain"].p50,
        "batch1_ratio": one["explain"].p50 / one["plain"].p50,
        "plain_memes_per_s": batch / many["plain"].p50,
        "explain_memes_per_s": batch / many["explain"].p50,
        "batch_ratio": many["explain"].p50 / many["plain"].p50,
    }


def bench_onnx(size: str, batch: int = 8) -> dict[str, Any]:
    """PyTorch fp32 and dtype="auto" against ONNX Runtime fp32 and int8, interleaved, on one ensemble size."""
    import copy

    from hf_memotion.ensemble import MemotionEnsembleModel

    folder = Path(tempfile.mkdtemp(prefix="hf_memotion_onnx_"))
    fp32 = random_ensemble(ENSEMBLE_SIZES[size])
    images, texts = sample_memes(batch, seed=1)
    calibration, _ = sample_memes(16, seed=2)
    exported = fp32.export_onnx(folder / "onnx", int8=True, calibration=calibration)
    fp32.optimize_for_inference()
    auto = copy.deepcopy(fp32)
    auto.check_dtype(_held_out_memes(32))
    auto.to_inference_dtype("auto")
    pipes = {
        "pytorch_fp32": _pipeline(fp32),
        "pytorch_auto": _pipeline(auto),
        "onnx_fp32": _pipeline(MemotionEnsembleModel.from_pretrained(folder / "onnx", dtype="float32")),
        "onnx_int8": _pipeline(MemotionEnsembleModel.from_pretrained(folder / "onnx", dtype="int8")),
    }
    memes = [{"image": i, "text": t} for i, t in zip(images, texts, strict=True)]
    repeats = {"demo": 10, "space": 4, "paper": 1}[size]
    many = time_interleaved({k: lambda p=p: p(memes, batch_size=batch) for k, p in pipes.items()}, repeats)
    one = time_interleaved({k: lambda p=p: p(memes[0]) for k, p in pipes.items()}, max(repeats, 3))
    reference = pipes["pytorch_fp32"](memes, batch_size=batch)
    out: dict[str, Any] = {"size": size, "batch": batch, "auto_dtype": auto.inference_dtype_reason}
    for name, pipe in pipes.items():
        out[name] = {
            "memes_per_s": batch / many[name].p50,
            "batch1_p50_s": one[name].p50,
            "max_difference": answers_difference(reference, pipe(memes, batch_size=batch)),
        }
    out["max_export_difference"] = max(exported["max_difference"].values())
    shutil.rmtree(folder, ignore_errors=True)
    return out


def bench_onnx_int8_demo() -> dict[str, Any] | None:
    """The trained demo ensemble's int8 graphs, both ways, checked on its held-out test release."""
    from hf_memotion.data import load_memotion
    from hf_memotion.ensemble import MemotionEnsembleModel

    ensemble_folder, data_folder = ROOT / "outputs" / "demo" / "ensemble", ROOT / "outputs" / "demo_data"
    if not (ensemble_folder / "config.json").is_file() or not data_folder.is_dir():
        return None
    data = load_memotion(data_folder)
    ensemble = MemotionEnsembleModel.from_pretrained(ensemble_folder, dtype=torch.float32)
    calibration = data["train"].select(range(64))["image"]
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, images in (("static_visual_dynamic_text", calibration), ("dynamic", None)):
            check = ensemble.export_onnx(Path(folder) / label, int8=True, held_out=data["test"], calibration=images)
            served = MemotionEnsembleModel.from_pretrained(Path(folder) / label)
            out[label] = {
                "macro_f1_change": check["int8"]["macro_f1_change"],
                "passed": check["int8"]["passed"],
                "auto_serves": served.precision,
                "rows": check["int8"]["rows"],
            }
    return out


def _text_over_vision(backbones: list[dict[str, Any]]) -> float | None:
    """GFLOP/s of the first text backbone (as the pipeline runs it) over the first visual one's."""
    text = [r["gflops"] for r in backbones if r["family"] == "text"]
    vision = [r["gflops"] for r in backbones if r["family"] == "vision"]
    return text[0] / vision[0] if text and vision else None


def _held_out_memes(n: int):
    """``n`` labelled demo memes (the demo test release, written to a temporary folder)."""
    from hf_memotion.data import load_memotion, make_demo_data

    root = make_demo_data(Path(tempfile.mkdtemp(prefix="hf_memotion_bench_")) / "data", n_train=n, n_test=n, seed=7)
    return load_memotion(root)["test"]


def bench_dtype(size: str = "space", batch: int = 8, train: bool = False) -> dict[str, Any]:
    """The pipeline in fp32, bf16 autocast, bf16 weights and ``dtype="auto"``; the demo ensemble's F1 per dtype.

    The variants' calls are interleaved (one of each in turn, ``REPEATS`` rounds), so a drift of the machine's
    speed during the run falls on all of them alike.
    """
    import copy

    out: dict[str, Any] = {"size": size, "batch": batch, "native_bf16": native_bf16("cpu")}
    images, texts = sample_memes(batch, seed=1)
    memes = [{"image": i, "text": t} for i, t in zip(images, texts, strict=True)]
    fp32 = random_ensemble(ENSEMBLE_SIZES[size]).optimize_for_inference()
    variants: dict[str, tuple[Any, bool]] = {"float32": (fp32, False)}
    if out["native_bf16"]:
        variants["bf16_autocast"] = (fp32, True)
        variants["bf16_weights"] = (copy.deepcopy(fp32).to_inference_dtype(torch.bfloat16), False)
    # dtype="auto" as a user gets it: the ensemble carries a bf16 check measured on labelled held-out memes
    checked = copy.deepcopy(fp32)
    out["auto_check"] = _brief_check(checked.check_dtype(_held_out_memes(32)))
    checked.to_inference_dtype("auto")
    out["auto_dtype"] = str(checked.base_models[checked.config.members[0].name].dtype)
    out["auto_reason"] = checked.inference_dtype_reason
    variants["auto"] = (checked, False)
    pipes = {label: _pipeline(ensemble) for label, (ensemble, _) in variants.items()}

    def call(label: str, inputs: list[dict[str, Any]]) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variants[label][1]):
            pipes[label](inputs, batch_size=batch)

    rounds = REPEATS[size]
    batches = time_interleaved({label: lambda label=label: call(label, memes) for label in variants}, rounds)
    ones = time_interleaved({label: lambda label=label: call(label, memes[:1]) for label in variants}, max(rounds, 3))
    finals = {}
    for label, (ensemble, autocast) in variants.items():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            finals[label] = ensemble.predict_proba(images, texts)  # what the pipeline computes, as arrays
        out[label] = {
            "batch": batches[label].as_dict(),
            "one": ones[label].as_dict(),
            "memes_per_s": batch / batches[label].p50,
            "speedup": batches["float32"].p50 / batches[label].p50,
            "max_probability_change": max_difference(finals[label], finals["float32"]),
        }
    folder = ROOT / "outputs" / "demo" / "ensemble"
    if not folder.is_dir() and train:
        _train_demo(str(folder.parent), [])
    if folder.is_dir() and out["native_bf16"]:
        from hf_memotion.data import load_memotion
        from hf_memotion.ensemble import MemotionEnsembleModel
        from hf_memotion.specs import load_run_config

        data_dir = load_run_config("demo")["data"]["demo"]["output_dir"]
        test = load_memotion(ROOT / data_dir)["test"]
        demo = MemotionEnsembleModel.from_pretrained(folder, dtype=torch.float32)
        out["demo_check"] = _brief_check(demo.check_dtype(test, record=False))
    return out


def _brief_check(check: dict[str, Any]) -> dict[str, Any]:
    keep = ("rows", "macro_f1", "macro_f1_change", "max_probability_change", "passed", "speed")
    return {k: check[k] for k in keep}


def _demo_f1(run: Path) -> dict[str, float] | None:
    report = run / "report.json"
    if not report.is_file():
        return None
    scores = json.loads(report.read_text())["table7"][-1]["scores"]
    return {k: scores[k] for k in ("subtask_a", "subtask_b", "subtask_c")}


def _train_demo(output: str, overrides: list[str]) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "demo", f"output_dir={output}", *overrides]
    subprocess.run(command, check=True, env={**os.environ, "HF_MEMOTION_PROGRESS": "0"})


def bench_layout(train: bool, batch: int = 8) -> dict[str, Any]:
    """Seconds per meme of both layouts (space size, batch of 8) and their demo-data macro-F1."""
    images, texts = sample_memes(batch, seed=2)
    out: dict[str, Any] = {}
    for layout in ("multitask", "per_problem"):
        ensemble = random_ensemble(ENSEMBLE_SIZES["space"], layout=layout)
        seconds = time_calls(lambda e=ensemble: e.predict_proba(images, texts), 1).p50
        out[layout] = {"seconds_per_meme": seconds / batch, "forwards_per_backbone": 1 if layout == "multitask" else 9}
        del ensemble
    out["speedup"] = out["per_problem"]["seconds_per_meme"] / out["multitask"]["seconds_per_meme"]
    runs = {"multitask": ROOT / "outputs" / "demo", "per_problem": ROOT / "outputs" / "demo_per_problem"}
    if train:
        if _demo_f1(runs["multitask"]) is None:
            _train_demo(str(runs["multitask"]), [])
        if _demo_f1(runs["per_problem"]) is None:
            _train_demo(str(runs["per_problem"]), ["models.0.layout=per_problem", "models.1.layout=per_problem"])
    for layout, run in runs.items():
        out[layout]["demo_macro_f1"] = _demo_f1(run)
    return out


def bench_int8(train: bool) -> dict[str, Any]:
    """int8 text backbones: speed on a BERT-base text model, macro-F1 change on the trained demo ensemble."""
    from torch.ao.quantization import quantize_dynamic

    from hf_memotion.models.text.preprocessing import encode_texts

    ensemble = random_ensemble(ENSEMBLE_SIZES["space"])
    name = ensemble.config.members[0].name
    model, tokenizer = ensemble.base_models[name], ensemble.preprocessors[name]
    _, texts = sample_memes(8, seed=3)
    inputs = tokenizer.pad(encode_texts(tokenizer, texts, int(model.config.max_length)), return_tensors="pt")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        fp32 = time_calls(lambda: model(**inputs), 5).p50
        before = model(**inputs).logits
        quantize_dynamic(model.memotion_text.backbone, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        int8 = time_calls(lambda: model(**inputs), 5).p50
        after = model(**inputs).logits
    out = {
        "bert_base_fp32_s": fp32,
        "bert_base_int8_s": int8,
        "speedup": fp32 / int8,
        "max_logit_change": float((after - before).abs().max()),
    }
    folder = ROOT / "outputs" / "demo" / "ensemble"
    if not folder.is_dir() and train:
        _train_demo(str(folder.parent), [])
    if folder.is_dir():
        out["demo_macro_f1"] = {mode: _demo_scores(folder, mode == "int8") for mode in ("fp32", "int8")}
        out["demo_macro_f1_change"] = {
            k: out["demo_macro_f1"]["int8"][k] - out["demo_macro_f1"]["fp32"][k] for k in out["demo_macro_f1"]["fp32"]
        }
    return out


def _demo_scores(folder: Path, quantize: bool) -> dict[str, float]:
    from hf_memotion.data import load_memotion
    from hf_memotion.ensemble import MemotionEnsembleModel
    from hf_memotion.metrics import memotion_scores
    from hf_memotion.specs import load_run_config
    from hf_memotion.tasks import PROBLEM_NAMES

    data_dir = load_run_config("demo")["data"]["demo"]["output_dir"]
    test = load_memotion(ROOT / data_dir)["test"]
    ensemble = MemotionEnsembleModel.from_pretrained(folder, quantize_text=quantize, dtype=torch.float32)
    probabilities: dict[str, list] = {p: [] for p in PROBLEM_NAMES}
    for start in range(0, len(test), 32):
        rows = test[start : start + 32]
        for p, v in ensemble.predict_proba(rows["image"], rows["text"]).items():
            probabilities[p].append(v)
    predictions = {p: np.concatenate(v).argmax(-1) for p, v in probabilities.items()}
    scores = memotion_scores(predictions, {p: np.asarray(test[p]) for p in PROBLEM_NAMES})
    return {k: scores[k] for k in ("subtask_a", "subtask_b", "subtask_c")}


def rss_probe(size: str) -> dict[str, float]:
    """In a fresh process: RSS after imports, then the peak while building and running the ensemble."""
    baseline = peak_rss_bytes()
    ensemble = random_ensemble(ENSEMBLE_SIZES[size])
    weights = weights_bytes(ensemble)
    images, texts = sample_memes(8, seed=4)
    _pipeline(ensemble)([{"image": i, "text": t} for i, t in zip(images, texts, strict=True)], batch_size=8)
    peak = peak_rss_bytes()
    return {
        "baseline_mb": baseline / 2**20,
        "peak_mb": peak / 2**20,
        "weights_mb": weights / 2**20,
        "peak_over_weights": peak / weights,
        "added_over_weights": (peak - baseline) / weights,
    }


def bench_memory(size: str) -> dict[str, float]:
    """:func:`rss_probe` in a subprocess (peak RSS is per process)."""
    result = subprocess.run([sys.executable, __file__, "--rss-probe", size], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_training() -> dict[str, Any]:
    """Samples/s of ``fit_classifier`` (Trainer, our settings) vs a plain PyTorch loop, same model and data."""
    from hf_memotion.data import load_memotion, make_demo_data
    from hf_memotion.families.vision import prepare_vision_dataset
    from hf_memotion.models.text.preprocessing import prepare_text_dataset
    from hf_memotion.models.text.tiny import build_tiny_text_backbone
    from hf_memotion.tasks import PROBLEM_NAMES
    from hf_memotion.training import ClassifierTrainingArguments, fit_classifier

    tmp = Path(tempfile.mkdtemp(prefix="hf_memotion_bench_"))
    data = load_memotion(make_demo_data(tmp / "data", n_train=768, n_test=0, seed=5))["train"]
    problems = list(PROBLEM_NAMES)
    out = {}
    from transformers import DataCollatorWithPadding

    from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
    from hf_memotion.models.vision import MemotionVisionConfig, MemotionVisionForImageClassification

    def collate(rows):
        return {key: torch.stack([r[key] for r in rows]) for key in ("pixel_values", "labels")}

    backbone, tokenizer = build_tiny_text_backbone(
        "bert", list(data["text"]), hidden_size=256, num_layers=4, num_heads=4, max_length=64
    )
    cases = {
        "text (BERT 4x256 + BiLSTM head)": (
            lambda: MemotionTextForSequenceClassification(MemotionTextConfig(text_config=backbone, problems=problems)),
            prepare_text_dataset(data, tokenizer, problems, 64),
            DataCollatorWithPadding(tokenizer),
            ClassifierTrainingArguments(optimizer="adam", learning_rate=1e-4, epochs=2, batch_size=32),
        ),
        "vision (resnet18, 128 px crops)": (
            lambda: MemotionVisionForImageClassification(
                MemotionVisionConfig(architecture="resnet18", problems=problems)
            ),
            prepare_vision_dataset(data, _processor("resnet18"), problems, train=True),
            collate,
            ClassifierTrainingArguments(optimizer="sgd", momentum=0.9, learning_rate=0.01, epochs=2, batch_size=32),
        ),
    }
    for name, (make_model, dataset, collate, training) in cases.items():
        samples = len(dataset) * training.epochs
        torch.manual_seed(0)
        start = time.perf_counter()
        fit_classifier(make_model(), dataset, None, training, tmp / "ours", data_collator=collate)
        ours = samples / (time.perf_counter() - start)
        torch.manual_seed(0)
        start = time.perf_counter()
        _plain_trainer(make_model(), dataset, collate, training, tmp / "plain")
        trainer = samples / (time.perf_counter() - start)
        torch.manual_seed(0)
        plain = samples / _plain_loop(make_model(), dataset, collate, training)
        out[name] = {
            "ours_samples_per_s": ours,
            "trainer_samples_per_s": trainer,
            "plain_samples_per_s": plain,
            "ratio_to_trainer": ours / trainer,
            "ratio_to_loop": ours / plain,
        }
        if native_bf16("cpu"):  # bf16 autocast with fp32 master weights (TrainingArguments(bf16=True))
            bf16 = dataclasses.replace(training, extra={**training.extra, "bf16": True})
            torch.manual_seed(0)
            start = time.perf_counter()
            fit_classifier(make_model(), dataset, None, bf16, tmp / "ours_bf16", data_collator=collate)
            out[name]["bf16_samples_per_s"] = samples / (time.perf_counter() - start)
            out[name]["bf16_speedup"] = out[name]["bf16_samples_per_s"] / ours
    return out


def bench_demo_precision() -> dict[str, Any]:
    """The demo run trained in fp32, in bf16 and in fp32 with another seed: wall time and held-out macro-F1.

    The second fp32 seed shows how far macro-F1 moves between two fp32 runs (the noise bf16 is judged against).
    """
    runs = {
        "fp32": [],
        "bf16": ["models.0.training.bf16=true", "models.1.training.bf16=true"],
        "fp32 (seed 1)": ["seed=1"],
    }
    out: dict[str, Any] = {}
    for label, overrides in runs.items():
        folder = Path(tempfile.mkdtemp(prefix="hf_memotion_bench_demo_"))
        start = time.perf_counter()
        _train_demo(str(folder / "run"), overrides)
        out[label] = {"seconds": time.perf_counter() - start, "macro_f1": _demo_f1(folder / "run")}
    out["bf16_speedup"] = out["fp32"]["seconds"] / out["bf16"]["seconds"]
    out["bf16_f1_change"] = {
        k: out["bf16"]["macro_f1"][k] - out["fp32"]["macro_f1"][k] for k in out["fp32"]["macro_f1"]
    }
    out["seed_f1_change"] = {
        k: out["fp32 (seed 1)"]["macro_f1"][k] - out["fp32"]["macro_f1"][k] for k in out["fp32"]["macro_f1"]
    }
    return out


def _plain_trainer(model, dataset, collate, training, output: Path) -> None:
    """A stock ``Trainer`` with stock arguments (same batch, epochs, learning rate and optimizer family)."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=training.batch_size,
        num_train_epochs=training.epochs,
        learning_rate=training.learning_rate,
        optim="sgd" if training.optimizer == "sgd" else "adamw_torch",
        report_to=[],
        save_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate).train()


def _processor(architecture: str):
    from hf_memotion.models.vision import MemotionImageProcessor

    return MemotionImageProcessor.from_timm(architecture, crop_size=128)


def _plain_loop(model, dataset, collate, training) -> float:
    """A hand-written loop doing the same work (DataLoader, optimizer, gradient clipping): seconds for all epochs."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=training.batch_size, shuffle=True, collate_fn=collate)
    if training.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=training.learning_rate,
            momentum=training.momentum,
            weight_decay=training.weight_decay,
        )
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    model.train()
    start = time.perf_counter()
    for _ in range(int(training.epochs)):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            if training.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), training.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
    return time.perf_counter() - start


def _gflops(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f} GFLOP/s"


def _best_fp32(kernels: dict[str, float | None]) -> float:
    return max(v for k, v in kernels.items() if k.startswith("fp32") and v)


def _shares(gflops: float, report: dict[str, Any]) -> str:
    """``gflops`` against the best fp32 kernel and the fp32 peak."""
    best = _best_fp32(report["kernels"])
    peak = report["peak"]["fp32_gflops"]
    return f"{gflops / best:.0%} of the best fp32 kernel" + (f", {gflops / peak:.0%} of fp32 peak" if peak else "")


def _print_report(report: dict[str, Any]) -> None:
    print(
        f"\n# hf-memotion benchmarks — {report['date']}\n\nmachine: {report['machine']}\ncommand: {report['command']}"
    )
    if "matmul" in report:
        print(f"\ndense fp32 matmul (2048^3): {report['matmul']:.1f} GFLOP/s")
    if "peak" in report:
        peak, kernels = report["peak"], report["kernels"]
        print(
            f"theoretical peak: fp32 {_gflops(peak['fp32_gflops'])}, bf16 {_gflops(peak['bf16_gflops'])} "
            f"({peak['name']}: {peak['basis']})"
        )
        print("| best kernel | GFLOP/s | of its dtype's peak |\n|---|---|---|")
        for name, value in kernels.items():
            dtype_peak = peak["bf16_gflops" if name.startswith("bf16") else "fp32_gflops"]
            share = f"{value / dtype_peak:.0%}" if value and dtype_peak else "-"
            print(f"| {name.replace('_', ' ')} | {_gflops(value)} | {share} |")
        best = _best_fp32(kernels)
        if peak["clock_ghz"] and best > peak["fp32_gflops"]:  # the reported clock is the nominal one
            implied = best / (peak["cores"] * peak["fp32_flop_per_cycle"])
            print(
                f"the best fp32 kernel implies a sustained clock of at least {implied:.2f} GHz "
                f"(reported: {peak['clock_ghz']:.2f} GHz): the cores boost past the reported clock"
            )
    for result in report.get("pipeline", []):
        print(f"\n## pipeline, {result['size']} ensemble (ten-crop on)\n")
        print("| | ours | naive | speed-up |\n|---|---|---|---|")
        b, o = result["naive_batch"], result["ours_batch"]
        print(
            f"| batch 8: memes/s | {result['memes_per_s']['ours']:.2f} | {result['memes_per_s']['naive']:.2f} | "
            f"{result['speedup_batch']:.2f}x |"
        )
        print(
            f"| batch 8: p50 / p95 (s) | {o['p50_s']:.3f} / {o['p95_s']:.3f} | {b['p50_s']:.3f} / {b['p95_s']:.3f} | |"
        )
        a, n = result["ours_one"], result["naive_one"]
        print(
            f"| batch 1: p50 / p95 (s) | {a['p50_s']:.3f} / {a['p95_s']:.3f} | {n['p50_s']:.3f} / {n['p95_s']:.3f} | "
            f"{result['speedup_one']:.2f}x |"
        )
        print(
            f"\npipeline machinery: batch 8 takes {result['machinery_cost']:.2f}x the model's own predict_proba "
            f"({result['ours_batch']['p50_s']:.3f} s vs {result['direct_batch']['p50_s']:.3f} s)"
        )
        print(f"largest output difference ours vs naive: {result['max_abs_difference']:.2e}")
        print(
            f"whole pipeline: {result['pipeline_gflop']:.1f} GFLOP per batch, "
            f"{result['pipeline_gflops']:.1f} GFLOP/s "
            f"= {result['pipeline_of_matmul']:.0%} of matmul, "
            f"{_shares(result['pipeline_gflops'], report)}\n"
        )
        print("| backbone | input | GFLOP | s | GFLOP/s | of matmul | of best fp32 kernel, of fp32 peak |")
        print("|---|---|---|---|---|---|---|")
        for row in result["backbones"]:
            print(
                f"| {row['model']} | {row['input']} | {row['gflop']:.2f} | {row['seconds']:.3f} | "
                f"{row['gflops']:.1f} | {row['of_matmul']:.0%} | {_shares(row['gflops'], report)} |"
            )
    for result in report.get("pipeline", []):
        if result.get("text_over_vision_gflops"):
            print(
                f"\n{result['size']}: text backbone at {result['text_over_vision_gflops']:.2f}x the visual "
                "backbone's GFLOP/s (fp32)"
            )
    if "dtype" in report:
        d = report["dtype"]
        print(f"\n## dtype ({d['size']} ensemble, ten-crop, batch {d['batch']}; native bf16: {d['native_bf16']})\n")
        print("| dtype | memes/s | batch p50 (s) | batch-1 p50 (s) | vs fp32 | largest probability change |")
        print("|---|---|---|---|---|---|")
        for label in ("float32", "bf16_autocast", "bf16_weights", "auto"):
            if label in d:
                row = d[label]
                speed = f"{row['speedup']:.2f}x" if "speedup" in row else "1.00x"
                change = f"{row['max_probability_change']:.4f}" if "max_probability_change" in row else "-"
                names = {
                    "auto": f"auto, this ensemble's own check ({d['auto_dtype']})",
                    "bf16_weights": "bf16 weights (auto's pick after a passed check)",
                }
                name = names.get(label, label)
                print(
                    f"| {name} | {row['memes_per_s']:.2f} | {row['batch']['p50_s']:.3f} | "
                    f"{row['one']['p50_s']:.3f} | {speed} | {change} |"
                )
        print(f"\nauto chose {d['auto_dtype']}: {d['auto_reason']}")
        for key, what in (
            ("auto_check", "this ensemble, 32 held-out demo memes"),
            ("demo_check", "the trained demo ensemble, demo test split"),
        ):
            if key in d:
                c = d[key]
                print(
                    f"bf16 check ({what}, {c['rows']} rows): macro-F1 change "
                    + ", ".join(f"{k} {v:+.4f}" for k, v in c["macro_f1_change"].items())
                    + f"; largest probability change {c['max_probability_change']:.4f}; "
                    f"{'passed' if c['passed'] else 'failed'} (tolerance 0.005)"
                )
    if "layout" in report:
        lay = report["layout"]
        print("\n## layout (space size, batch 8)\n")
        print("| layout | forwards per backbone | s per meme | demo macro-F1 A / B / C |")
        print("|---|---|---|---|")
        for name in ("multitask", "per_problem"):
            f1 = lay[name].get("demo_macro_f1")
            cells = " / ".join(f"{f1[k]:.3f}" for k in ("subtask_a", "subtask_b", "subtask_c")) if f1 else "not trained"
            print(f"| {name} | {lay[name]['forwards_per_backbone']} | {lay[name]['seconds_per_meme']:.3f} | {cells} |")
        print(f"\nmulti-task speed-up: {lay['speedup']:.2f}x")
    if "int8" in report:
        q = report["int8"]
        print(
            f"\n## int8 text backbones\n\nBERT-base text model, 8 texts: fp32 {q['bert_base_fp32_s']:.3f} s, int8 "
            f"{q['bert_base_int8_s']:.3f} s, speed-up {q['speedup']:.2f}x"
        )
        if "demo_macro_f1_change" in q:
            print(
                "demo ensemble macro-F1 change (int8 - fp32): "
                + ", ".join(f"{k} {v:+.4f}" for k, v in q["demo_macro_f1_change"].items())
            )
    for size, row in report.get("memory", {}).items():
        print(
            f"\nmemory, {size}: peak RSS {row['peak_mb']:.0f} MB (after imports {row['baseline_mb']:.0f} MB), "
            f"weights {row['weights_mb']:.0f} MB: peak/weights {row['peak_over_weights']:.2f}, "
            f"(peak - imports)/weights {row['added_over_weights']:.2f}"
        )
    if "training" in report:
        print("\n## training throughput (2 epochs, 768 demo memes)\n")
        print("| model | ours (fit_classifier) | stock Trainer | plain loop | ours / Trainer | ours / loop |")
        print("|---|---|---|---|---|---|")
        for name, row in report["training"].items():
            print(
                f"| {name} | {row['ours_samples_per_s']:.1f}/s | {row['trainer_samples_per_s']:.1f}/s | "
                f"{row['plain_samples_per_s']:.1f}/s | {row['ratio_to_trainer']:.2f} | "
                f"{row['ratio_to_loop']:.2f} |"
            )
        for name, row in report["training"].items():
            if "bf16_speedup" in row:
                print(f"{name}: bf16 autocast {row['bf16_samples_per_s']:.1f}/s = {row['bf16_speedup']:.2f}x fp32")
    if "onnx" in report:
        print("\n## ONNX Runtime against PyTorch (the same pipeline, interleaved)\n")
        print("| size | backend | memes/s at 8 | batch 1 p50 | largest probability difference from PyTorch fp32 |")
        print("|---|---|---|---|---|")
        for row in report["onnx"]["sizes"]:
            for name in ("pytorch_fp32", "pytorch_auto", "onnx_fp32", "onnx_int8"):
                r = row[name]
                print(
                    f"| {row['size']} | {name} | {r['memes_per_s']:.1f} | {r['batch1_p50_s']:.3f} s | "
                    f"{r['max_difference']:.1e} |"
                )
            print(f"\n{row['size']}: PyTorch dtype='auto' chose: {row['auto_dtype']}")
        demo = report["onnx"]["demo_int8"]
        if demo:
            print("\ntrained demo ensemble, int8 graphs checked on its held-out test release:")
            for label, r in demo.items():
                changes = ", ".join(f"{k} {v:+.4f}" for k, v in r["macro_f1_change"].items())
                verdict = "passed" if r["passed"] else "failed"
                print(f"  {label}: {changes}; {verdict}; dtype='auto' serves {r['auto_serves']}")
    if "explain" in report:
        print("\n## explain=True (Shapley shares, Grad-CAM, integrated gradients) against a plain call\n")
        print("| size | batch 1 p50 plain | explained | multiple | memes/s at 8 plain | explained | multiple |")
        print("|---|---|---|---|---|---|---|")
        for row in report["explain"]:
            print(
                f"| {row['size']} | {row['plain_batch1_p50_s']:.3f} s | {row['explain_batch1_p50_s']:.3f} s | "
                f"{row['batch1_ratio']:.1f}x | {row['plain_memes_per_s']:.1f} | {row['explain_memes_per_s']:.1f} | "
                f"{row['batch_ratio']:.1f}x |"
            )
    if "demo_precision" in report:
        d = report["demo_precision"]
        print("\n## demo training, fp32 vs bf16 (scripts/train.py demo)\n")
        print("| run | seconds | macro-F1 A / B / C |\n|---|---|---|")
        for label in ("fp32", "bf16", "fp32 (seed 1)"):
            f1 = d[label]["macro_f1"]
            print(
                f"| {label} | {d[label]['seconds']:.0f} | "
                + " / ".join(f"{f1[k]:.3f}" for k in ("subtask_a", "subtask_b", "subtask_c"))
                + " |"
            )
        print(
            f"\nbf16 speed-up {d['bf16_speedup']:.2f}x; macro-F1 change bf16 - fp32: "
            + ", ".join(f"{k} {v:+.3f}" for k, v in d["bf16_f1_change"].items())
            + "; between two fp32 seeds: "
            + ", ".join(f"{k} {v:+.3f}" for k, v in d["seed_f1_change"].items())
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--sizes", nargs="+", choices=list(ENSEMBLE_SIZES), default=["demo", "space"])
    parser.add_argument("--train-layouts", action="store_true", help="train the demo runs the layout/int8 F1 need")
    parser.add_argument(
        "--train-precision",
        action="store_true",
        help="train the demo run in fp32, bf16 and fp32 with another seed (~9 min)",
    )
    parser.add_argument("--output", type=Path, help="also write the figures as JSON")
    parser.add_argument("--rss-probe", choices=list(ENSEMBLE_SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_probe:
        print(json.dumps(rss_probe(args.rss_probe)))
        return 0
    machine = (
        f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "command": "python benchmarks/bench.py " + " ".join(argv or sys.argv[1:]),
    }
    matmul = matmul_gflops()
    report["matmul"] = matmul
    peak = theoretical_peak("cpu")
    report["peak"] = peak.as_dict()
    report["kernels"] = best_kernels("cpu")
    if "pipeline" in args.sections:
        report["pipeline"] = [bench_pipeline(size, matmul) for size in args.sizes]
    if "dtype" in args.sections:
        report["dtype"] = bench_dtype(train=args.train_layouts)
    if "layout" in args.sections:
        report["layout"] = bench_layout(args.train_layouts)
    if "int8" in args.sections:
        report["int8"] = bench_int8(args.train_layouts)
    if "memory" in args.sections:
        report["memory"] = {size: bench_memory(size) for size in args.sizes}
    if "training" in args.sections:
        report["training"] = bench_training()
    if "explain" in args.sections:
        report["explain"] = [bench_explain(size) for size in args.sizes]
    if "onnx" in args.sections:
        report["onnx"] = {"sizes": [bench_onnx(size) for size in args.sizes], "demo_int8": bench_onnx_int8_demo()}
    if args.train_precision:
        report["demo_precision"] = bench_demo_precision()
    _print_report(report)
    if args.output:
        atomic_write_text(args.output, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
