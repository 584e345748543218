"""``scripts/train.py CONFIG --plan``: trainings, FLOPs on the real architectures, steps, disk; nothing trains."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_memotion.families import expand_models, parse_member
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.models.vision import MemotionVisionConfig, MemotionVisionForImageClassification
from hf_memotion.recipe.ensemble_recipe import run_training
from hf_memotion.recipe.planning import _count, count_step_flops, plan_training
from hf_memotion.recipe.specs import EnsembleRunSpec
from hf_memotion.training import cross_validation

ROOT = Path(__file__).resolve().parents[1]
TINY_TEXT = {
    "tiny": {"hidden_size": 16, "num_layers": 1},
    "model": {"lstm_hidden_size": 8, "attention_size": 8, "ffn_size": 8, "max_length": 16},
}


def test_flops_counted_on_fake_tensors_equal_a_count_on_random_weights():
    text = parse_member({"name": "t", "family": "text", "problems": ["humour"], **TINY_TEXT})
    vision = parse_member({"name": "v", "family": "vision", "problems": ["sentiment"], "processor": {"crop_size": 48}})
    (text_entry,), (vision_entry,) = expand_models([text]), expand_models([vision])
    parameters, train, forward = _count(text_entry, [])
    backbone, _ = build_tiny_text_backbone("bert", [f"word{i}" for i in range(200)], hidden_size=16, num_layers=1)
    model = MemotionTextForSequenceClassification(
        MemotionTextConfig(text_config=backbone, problems=["humour"], **TINY_TEXT["model"])
    )
    tokens = torch.randint(5, 100, (3, 16))
    real = count_step_flops(model.train(), {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)})
    assert train == real // 3 and parameters == sum(p.numel() for p in model.parameters())
    assert 0 < forward < train
    parameters, train, forward = _count(vision_entry, [])
    model = MemotionVisionForImageClassification(
        MemotionVisionConfig(architecture="test_resnet", problems=["sentiment"])
    )
    real = count_step_flops(model.train(), {"pixel_values": torch.randn(4, 3, 48, 48)})
    assert train == real // 4 and parameters == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        single = count_step_flops(model.eval(), {"pixel_values": torch.randn(1, 3, 48, 48)}, backward=False)
    assert forward == 10 * single  # ten crops per meme


@pytest.mark.slow
def test_the_plan_counts_the_trainings_and_steps_the_recipe_runs(demo_root, tmp_path, monkeypatch):
    steps = []
    real = cross_validation.fit_classifier

    def record(*args, **kwargs):
        trainer = real(*args, **kwargs)
        steps.append(trainer.state.global_step)
        return trainer

    monkeypatch.setattr(cross_validation, "fit_classifier", record)
    config = {
        "data": {"path": str(demo_root)},
        "output_dir": str(tmp_path),
        "n_splits": 2,
        "bf16_check": False,
        "stacking": {"methods": ["average"]},
        "models": [
            {
                "name": "cnn",
                "family": "vision",
                "layout": "per_problem",
                "problems": ["humour", "motivational"],
                "processor": {"crop_size": 32},
                "ten_crop": False,
                "training": {"epochs": 2, "batch_size": 8, "lr_milestones": [1]},
                "search": {"learning_rate": [0.01, 0.1]},
            },
            {
                "name": "bert",
                "family": "text",
                **TINY_TEXT,
                "training": {"epochs": 2, "batch_size": 8, "early_stopping_patience": None, "validation_fraction": 0},
            },
        ],
    }
    plan = plan_training(config)
    assert [m.name for m in plan.models] == ["cnn-humour", "cnn-motivational", "bert"]
    assert [m.trainings for m in plan.models] == [5, 5, 3] and plan.trainings == 13
    assert plan.trainings_without_selection == 9
    report = run_training(config)
    assert report["protocol"]["trainings"] == plan.trainings == len(steps)
    assert sum(steps) == sum(m.steps for m in plan.models)  # every training runs all its epochs here
    assert plan.n_train == report["n_train"] and plan.n_test == report["n_test"]
    saved = sum(f.stat().st_size for f in tmp_path.glob("models/*/model/model.safetensors"))
    assert plan.model_bytes == pytest.approx(saved, rel=0.05)  # fp32 weights; the rest is the file's header
    text = plan.format()
    assert "| cnn-humour | humour | 5 |" in text and "trainings: 13" in text and "without selection: 9" in text


def test_train_py_plan_prints_the_plan_and_trains_nothing(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            str(ROOT / "configs" / "demo.yaml"),
            f"output_dir={out}",
            "--plan",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| text | all nine | 4 |" in result.stdout and "trainings: 8" in result.stdout
    assert not out.exists()


def test_the_papers_text_backbones_plan_without_the_network(tmp_path):
    """No Hub (an endpoint nothing answers, an empty cache, HF_HUB_OFFLINE unset): one paper backbone plans from its
    published sizes at once, with no download tried and no retry."""
    code = (
        "from hf_memotion.recipe.planning import plan_training\n"
        "from hf_memotion.recipe.specs import EnsembleRunSpec\n"
        "spec = EnsembleRunSpec.from_dict({'models': [{'name': 'bert', 'family': 'text',"
        " 'backbone': 'bert-large-uncased', 'problems': ['humour']}], 'plan': {'n_train': 10, 'n_test': 5}})\n"
        "print(plan_training(spec).notes)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf_home"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "published sizes" in done.stdout
    assert "Retrying" not in done.stderr and "127.0.0.1" not in done.stderr


def test_a_text_backbone_whose_config_cannot_be_read_is_named():
    spec = EnsembleRunSpec.from_dict(
        {
            "models": [{"name": "x", "family": "text", "backbone": "no-such/backbone"}],
            "plan": {"n_train": 10, "n_test": 5},
        }
    )
    with pytest.raises(FileNotFoundError, match="no-such/backbone.*local folder"):
        plan_training(spec)


@pytest.mark.slow
def test_the_paper_config_plans_its_full_protocol_offline():
    plan = plan_training(
        EnsembleRunSpec.from_dict(__import__("yaml").safe_load((ROOT / "configs" / "paper.yaml").read_text()))
    )
    assert len(plan.models) == 64 and plan.models_without_sharing == 72
    # 4 visual backbones x 8 models x (9 rates x 5 folds + refit) + 4 textual x 8 x (30 trials x 5 folds + refit)
    assert plan.trainings == 32 * 46 + 32 * 151 == 6304
    assert plan.models_without_sharing * 6 == 432 and plan.trainings_without_selection == 384
    text = plan.format()
    assert "432 trainings without selection" in text and "GPU-hours at 100 TFLOP/s" in text
    by_name = {m.name: m for m in plan.models}
    assert by_name["pnasnet5large-humour"].step_flops > by_name["inception_resnet_v2-humour"].step_flops
    assert by_name["bert-humour"].parameters == pytest.approx(336e6, rel=0.02)  # BERT-large + BiLSTM head
