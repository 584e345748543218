"""Memory that does not grow with the ensemble: freed base models, ensembles assembled from saved folders."""

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import DataCollatorWithPadding

from conftest import build_tiny_ensemble
from hf_memotion.data import load_memotion
from hf_memotion.ensemble import MemotionEnsembleModel
from hf_memotion.ensemble.inference_dtype import check_inference_dtype
from hf_memotion.models.heads import resolve_problem_labels
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.preprocessing import prepare_text_dataset
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.training import ClassifierTrainingArguments, CrossValidator
from hf_memotion.training.runs import MemberRun, run_classifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("keep_model", [False, True])
def test_a_run_that_does_not_keep_its_model_leaves_no_model_alive(demo_root, tmp_path, keep_model):
    data = load_memotion(demo_root)
    backbone, tokenizer = build_tiny_text_backbone("bert", data["train"]["text"], hidden_size=16, num_layers=1)
    config = MemotionTextConfig(
        text_config=backbone, problems=["humour"], lstm_hidden_size=8, attention_size=8, ffn_size=8
    )
    made = []

    def model_init():
        model = MemotionTextForSequenceClassification(config)
        made.append(weakref.ref(model))
        return model

    validator = CrossValidator(
        model_init,
        resolve_problem_labels(["humour"]),
        ClassifierTrainingArguments(epochs=1, batch_size=8),
        n_splits=2,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    result = run_classifier(
        validator,
        train_dataset=prepare_text_dataset(data["train"], tokenizer, ["humour"], 32),
        output_dir=tmp_path / "run",
        settings={"keep": keep_model},
        preprocessor=tokenizer,
        test_dataset=prepare_text_dataset(data["test"], tokenizer, ["humour"], 32),
        test_labels={"humour": data["test"]["humour"]},
        run=MemberRun(n_splits=2, keep_model=keep_model),
    )
    gc.collect()
    alive = [ref() for ref in made if ref() is not None]
    assert len(made) == 3 and (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert result.test_scores is not None
    if keep_model:
        assert alive == [result.model]  # the folds' models are gone, the refit one is returned
    else:
        assert alive == [] and result.model is None  # nothing left holding memory (or a GPU)
    assert not list((tmp_path / "run").glob(".model.*"))  # the model was written beside and moved into place


def test_an_ensemble_assembled_from_saved_folders_links_them_and_predicts_the_same(synthetic, tmp_path):
    full = build_tiny_ensemble(synthetic)
    full.save_pretrained(tmp_path / "full")
    light = MemotionEnsembleModel(full.config, stackers=full.stackers)
    folders = {name: tmp_path / "full" / name for name in ("text", "vision")}
    light.save_pretrained(tmp_path / "linked", base_model_folders=folders)
    for name in folders:
        for source in folders[name].iterdir():
            linked = tmp_path / "linked" / name / source.name
            assert linked.is_file() and not linked.is_symlink()
            assert os.path.samefile(source, linked)  # one copy of the weights on disk
    images, texts = [Image.new("RGB", (40, 40), (30, 200, 90))] * 2, ["lol nice", "when the exam is on monday"]
    expected = MemotionEnsembleModel.from_pretrained(tmp_path / "full", dtype=torch.float32)
    got = MemotionEnsembleModel.from_pretrained(tmp_path / "linked", dtype=torch.float32)
    for problem, values in got.predict_proba(images, texts).items():
        np.testing.assert_allclose(values, expected.predict_proba(images, texts)[problem], atol=1e-6)
    with pytest.raises(ValueError, match="neither loaded nor given in base_model_folders"):
        light.save_pretrained(tmp_path / "missing", base_model_folders={"text": folders["text"]})
    with pytest.raises(FileNotFoundError, match="not a saved model folder"):
        light.save_pretrained(tmp_path / "bad", base_model_folders={**folders, "text": tmp_path})
    assert not (tmp_path / "missing").exists() and not (tmp_path / "bad").exists()  # nothing half-written


def test_the_dtype_check_loading_models_one_at_a_time_matches_the_in_memory_check(synthetic, demo_root, tmp_path):
    from hf_memotion.families import get_family

    full = build_tiny_ensemble(synthetic)
    full.save_pretrained(tmp_path / "full")
    held_out = load_memotion(demo_root)["test"]
    loaded = []

    def load(member):
        loaded.append(member.name)
        return get_family(member.family).load(str(tmp_path / "full" / member.path))

    light = MemotionEnsembleModel(full.config, stackers=full.stackers)
    one_at_a_time = check_inference_dtype(light, held_out, load=load)
    in_memory = full.check_dtype(held_out, record=False)
    assert loaded == ["text", "vision"]
    for dtype, scores in in_memory["macro_f1"].items():
        assert one_at_a_time["macro_f1"][dtype] == pytest.approx(scores)
    assert one_at_a_time["max_probability_change"] == pytest.approx(in_memory["max_probability_change"], abs=1e-6)


@pytest.mark.slow
def test_peak_memory_of_an_ensemble_run_does_not_grow_with_its_number_of_models(tmp_path):
    """benchmarks/memory_check.py: 4 multi-task vs 36 per-problem tiny text models (four families), fresh processes."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory_check.py"), "--output", str(tmp_path / "memory.json")],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_MEMOTION_PROGRESS": "0"},
    )
    report = json.loads((tmp_path / "memory.json").read_text())
    print(out.stdout)  # shown with -s
    assert report["few"]["models"] == 4 and report["many"]["models"] == 36
    # each model holds about 7 MB of weights (21 MB with its Adam state): 32 more kept would add at least 220 MB
    assert report["many"]["peak_rss_mb"] <= report["few"]["peak_rss_mb"] + report["margin_mb"], report
    assert out.returncode == 0 and report["within_bound"], out.stdout + out.stderr[-2000:]
