"""Memory that does not grow with the ensemble: freed base models, ensembles assembled from saved folders."""

import gc
import json
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import DataCollatorWithPadding

from conftest import build_tiny_ensemble
from hf_memotion.data import load_memotion
from hf_memotion.models.ensemble import MemotionEnsembleModel
from hf_memotion.models.ensemble.inference_dtype import check_inference_dtype
from hf_memotion.models.heads import resolve_problem_labels
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.preprocessing import prepare_text_dataset
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.training import ClassifierTrainingConfig, CrossValidator
from hf_memotion.training.runs import run_classifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("keep_model", [False, True])
def test_a_run_that_does_not_keep_its_model_leaves_no_model_alive(demo_root, tmp_path, keep_model):
    data = load_memotion(demo_root)
    backbone, tokenizer = build_tiny_text_backbone("bert", data["train"]["text"], hidden_size=16, num_layers=1)
    config = MemotionTextConfig(text_config=backbone, problems=["humour"], lstm_hidden_size=8, attention_size=8,
                                ffn_size=8)  # fmt: skip
    made = []

    def model_init():
        model = MemotionTextForSequenceClassification(config)
        made.append(weakref.ref(model))
        return model

    validator = CrossValidator(model_init, resolve_problem_labels(["humour"]), ClassifierTrainingConfig(epochs=1,
                               batch_size=8), n_splits=2, data_collator=DataCollatorWithPadding(tokenizer))  # fmt: skip
    result = run_classifier(
        validator,
        train_dataset=prepare_text_dataset(data["train"], tokenizer, ["humour"], 32),
        output_dir=tmp_path / "run",
        settings={"keep": keep_model},
        preprocessor=tokenizer,
        test_dataset=prepare_text_dataset(data["test"], tokenizer, ["humour"], 32),
        test_labels={"humour": data["test"]["humour"]},
        keep_model=keep_model,
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
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    full = build_tiny_ensemble(synthetic)
    full.save_pretrained(tmp_path / "full")
    held_out = load_memotion(demo_root)["test"]
    loaded = []

    def load(entry):
        folder = tmp_path / "full" / entry["path"]
        loaded.append(entry["name"])
        if entry["modality"] == "text":
            return AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
        return AutoModelForImageClassification.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)

    light = MemotionEnsembleModel(full.config, stackers=full.stackers)
    one_at_a_time = check_inference_dtype(light, held_out, load=load)
    in_memory = full.check_dtype(held_out, record=False)
    assert loaded == ["text", "vision"]
    for dtype, scores in in_memory["macro_f1"].items():
        assert one_at_a_time["macro_f1"][dtype] == pytest.approx(scores)
    assert one_at_a_time["max_probability_change"] == pytest.approx(in_memory["max_probability_change"], abs=1e-6)


def _peak_rss_of_a_run(tmp_path: Path, name: str, layout: str) -> dict:
    """Train an ensemble of four text families in a fresh process (``layout``: multitask = 4 models, per_problem =
    36); its peak RSS and model count."""
    families = ("bert", "roberta", "gpt2", "xlnet")
    models = [
        {"name": family, "modality": "text", "backbone": f"tiny:{family}", "layout": layout,
         "tiny": {"hidden_size": 256, "num_layers": 2, "num_heads": 4},
         "model": {"lstm_hidden_size": 64, "attention_size": 32, "ffn_size": 32, "max_length": 32},
         "training": {"optimizer": "adam", "learning_rate": 0.001, "epochs": 1, "batch_size": 16,
                      "early_stopping_patience": None}}
        for family in families
    ]  # fmt: skip
    config = {
        "data": {"demo": {"output_dir": str(tmp_path / "data"), "n_train": 48, "n_test": 16, "seed": 0}},
        "output_dir": str(tmp_path / name),
        "n_splits": 2,
        "models": models,
        "stacking": {"methods": ["average"]},
        "bf16_check": False,
    }
    code = textwrap.dedent(f"""
        import json
        from hf_memotion.benchmarking import peak_rss_bytes
        from hf_memotion.training.recipe import run_training
        report = run_training(json.loads({json.dumps(json.dumps(config))}))
        print(json.dumps({{"peak_mb": peak_rss_bytes() / 2**20, "rows": len(report["table7"])}}))
    """)
    env = {**os.environ, "HF_MEMOTION_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["models"] = len(list((tmp_path / name / "models").iterdir()))
    return result


@pytest.mark.slow
def test_peak_memory_of_an_ensemble_run_does_not_grow_with_its_number_of_models(tmp_path):
    few = _peak_rss_of_a_run(tmp_path, "four", "multitask")
    many = _peak_rss_of_a_run(tmp_path, "thirty_six", "per_problem")
    assert few["models"] == 4 and many["models"] == 36
    print(f"peak RSS: 4 models {few['peak_mb']:.0f} MB, 36 models {many['peak_mb']:.0f} MB")  # shown with -s
    # each model holds about 7 MB of weights (21 MB with its Adam state): 32 more kept would add at least 220 MB
    margin_mb = 120
    assert many["peak_mb"] <= few["peak_mb"] + margin_mb, (few, many)
