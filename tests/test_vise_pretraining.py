"""VisE pretraining: the schedule, the streaming collator, a run that lowers both losses, resuming from a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoImageProcessor, AutoModel, AutoModelForPreTraining

import hf_memotion  # noqa: F401  (registers the Auto classes)
from hf_memotion.data.engagement import make_demo_engagement
from hf_memotion.models.vise import ViseForPretraining, ViseModel
from hf_memotion.models.vision import MemotionImageProcessor
from hf_memotion.training import MemotionTrainer
from hf_memotion.vise import (
    MiningSpec,
    PretrainingArguments,
    PretrainingCollator,
    load_mined_labels,
    mine_labels,
    pretrain_vise,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"architecture": "test_resnet", "image_size": 32, "batch_size": 32, "shuffle_buffer": 200, "logging_steps": 5}


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    base = tmp_path_factory.mktemp("vise_pre")
    corpus = make_demo_engagement(base / "posts", n_posts=480, n_shards=4, seed=2, image_size=32)
    settings = MiningSpec(comment_clusters=12, reaction_clusters=6, holdout_fraction=0.2, embedding_dim=16)
    mine_labels(corpus, base / "mined", settings)
    return base / "mined"


def _schedule(tmp_path, decay, total):
    """The multiplier the shared trainer installs for a pretraining run of ``total`` steps."""
    args = PretrainingArguments(decay=decay).to_training_arguments(tmp_path, max_steps=total)
    trainer = MemotionTrainer(model=torch.nn.Linear(2, 2), args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=total)
    assert type(trainer.optimizer).__name__ == "SGD" and trainer.optimizer.defaults["momentum"] == 0.9
    assert len(trainer.optimizer.param_groups) == 1 and trainer.optimizer.defaults["weight_decay"] == 1e-4
    return trainer.lr_scheduler.lr_lambdas[0]


def test_schedule_warms_up_linearly_then_decays_as_the_paper(tmp_path):
    imagenet = _schedule(tmp_path, "imagenet", 200)
    assert [imagenet(s) for s in (0, 5, 10, 59, 60)] == [0.0, 0.5, 1.0, 1.0, pytest.approx(0.1)]
    assert imagenet(180) == pytest.approx(1e-3)
    halvings = _schedule(tmp_path, "vise-250m", 110)  # ten halvings: after each eleventh of the run
    assert [halvings(s) for s in (9, 10, 55, 109)] == [1.0, 0.5, pytest.approx(0.5**5), pytest.approx(0.5**10)]
    with pytest.raises(ValueError, match="decay must be one of"):
        PretrainingArguments(decay="cosine-ish")
    assert PretrainingArguments(batch_size=1920).learning_rate() == pytest.approx(0.75)  # 0.1 / 256 x 1920


def test_the_label_stream_is_one_shard_per_file_and_collates_to_dense_targets(mined):
    stream = load_mined_labels(mined)
    assert stream.num_shards == 4
    rows = list(stream.take(8))
    collate = PretrainingCollator(MemotionImageProcessor(crop_size=24, rotation_degrees=0), comment_clusters=12)
    batch = collate(rows)
    assert batch["pixel_values"].shape == (8, 3, 24, 24)
    for row, target in zip(rows, batch["comment_targets"], strict=True):
        expected = np.zeros(12, dtype=np.float32)
        expected[row["comment_clusters"]] = row["comment_weights"]
        assert np.allclose(target.numpy(), expected)
    assert batch["reaction_labels"].tolist() == [r["reaction_cluster"] for r in rows]
    broken = dict(rows[0], post_id="broken", image={"bytes": b"not an image", "path": None})
    assert len(collate([broken, rows[1]])["reaction_labels"]) == 1 and collate.skipped == 1


@pytest.mark.slow
def test_pretraining_lowers_both_losses_and_saves_an_automodel_backbone(mined, tmp_path):
    settings = PretrainingArguments(**TINY, max_steps=60, save_steps=30, base_learning_rate=0.8, seed=0)
    report = pretrain_vise(mined, tmp_path / "run", settings)
    curves = report["curves"]
    assert [c["step"] for c in curves] == list(range(5, 61, 5))
    for name in ("comment_loss", "reaction_loss"):
        start, end = np.mean([c[name] for c in curves[:2]]), np.mean([c[name] for c in curves[-2:]])
        assert end < start - 0.05, (name, start, end)
    assert report["peak_learning_rate"] == pytest.approx(0.8 / 256 * 32)
    backbone = AutoModel.from_pretrained(tmp_path / "run" / "backbone")
    assert isinstance(backbone, ViseModel)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path / "run" / "backbone"), MemotionImageProcessor)
    full = AutoModelForPreTraining.from_pretrained(tmp_path / "run" / "pretraining")
    assert isinstance(full, ViseForPretraining) and full.config.comment_clusters == 12
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone.eval()(x).pooler_output, full.eval().vise(x).pooler_output)
    saved = json.loads((tmp_path / "run" / "pretraining.json").read_text())
    assert saved["max_steps"] == 60 and saved["comment_clusters"] == 12 and saved["demo"] is True
    card = ModelCard.load(tmp_path / "run" / "backbone" / "README.md")
    assert card.data.license == "apache-2.0" and "synthetic demo corpus" in card.text
    assert f"| reaction loss | {curves[0]['reaction_loss']:.4f} |" in card.text


@pytest.mark.parametrize("targets", ["comments", "reactions"])
def test_the_papers_ablations_pretrain_with_one_loss_term(mined, tmp_path, targets):
    settings = PretrainingArguments(**TINY, max_steps=10, save_steps=100, targets=targets)
    report = pretrain_vise(mined, tmp_path / "run", settings)
    kept, dropped = ("comment_loss", "reaction_loss") if targets == "comments" else ("reaction_loss", "comment_loss")
    assert report["targets"] == targets and report["curves"]
    for point in report["curves"]:
        assert kept in point and dropped not in point
        assert point["loss"] == pytest.approx(point[kept], abs=1e-3)  # the loss is that one term
    full = AutoModelForPreTraining.from_pretrained(tmp_path / "run" / "pretraining")
    start = ViseForPretraining(full.config)  # the untrained head keeps its initialisation
    head = "reaction_head" if targets == "comments" else "comment_head"
    assert torch.equal(getattr(full, head).bias, getattr(start, head).bias)
    with pytest.raises(ValueError, match="targets must be one of"):
        PretrainingArguments(targets="likes")


def test_bad_inputs_name_the_fix(tmp_path, mined):
    with pytest.raises(FileNotFoundError, match="the output folder of mine_vise_labels.py"):
        pretrain_vise(tmp_path, tmp_path / "run", PretrainingArguments(**TINY, max_steps=2))
    with pytest.raises(ValueError, match="not a multiple"):
        pretrain_vise(
            mined,
            tmp_path / "run",
            PretrainingArguments(**{**TINY, "batch_size": 33}, gradient_accumulation_steps=2, max_steps=2),
        )
    with pytest.raises(ValueError, match="section .pretraining.: unknown key .lr."):
        PretrainingArguments.from_dict({"lr": 0.1})


def _script(*args, cwd, env=None):
    command = [sys.executable, str(ROOT / "scripts" / "pretrain_vise.py"), *args]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "HF_MEMOTION_PROGRESS": "0", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_a_killed_pretraining_run_resumes_from_its_last_checkpoint(mined, tmp_path):
    args = [
        str(ROOT / "configs" / "vise_pretrain_demo.yaml"),
        "data.mine=null",
        f"data.labels={mined}",
        f"output_dir={tmp_path / 'run'}",
        "pretraining.architecture=test_resnet",
        "pretraining.image_size=32",
        "pretraining.batch_size=16",
        "pretraining.max_steps=120",
        "pretraining.save_steps=10",
        "pretraining.shuffle_buffer=100",
    ]
    first = _script(*args, cwd=tmp_path)
    checkpoints = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 300
    while not any(checkpoints.glob("checkpoint-*")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.5)
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    output, _ = first.communicate()
    done = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    assert done and done[-1] < 120, f"the run must be killed between its first checkpoint and its end: {output}"
    second = _script(*args, cwd=tmp_path)
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output
    report = json.loads((tmp_path / "run" / "pretraining.json").read_text())
    assert report["resumed_from"].endswith(f"checkpoint-{done[-1]}")
    steps = [c["step"] for c in report["curves"]]  # the restored history, then the remaining steps
    assert steps == sorted(set(steps)) and steps[-1] == 120
    assert "comment_loss" in output and (tmp_path / "run" / "loss_curves.png").is_file()


@pytest.mark.slow
def test_two_processes_pretrain_from_the_same_stream(mined, tmp_path):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    args = [
        str(ROOT / "scripts" / "pretrain_vise.py"),
        str(ROOT / "configs" / "vise_pretrain_demo.yaml"),
        "data.mine=null",
        f"data.labels={mined}",
        f"output_dir={tmp_path / 'run'}",
        "pretraining.architecture=test_resnet",
        "pretraining.image_size=32",
        "pretraining.batch_size=32",
        "pretraining.max_steps=40",
        "pretraining.base_learning_rate=0.8",
        "pretraining.logging_steps=5",
    ]
    run = subprocess.run(
        [*launcher, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_MEMOTION_PROGRESS": "0"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "pretraining.json").read_text())
    assert report["processes"] == 2 and report["curves"][-1]["step"] == 40
    for name in ("comment_loss", "reaction_loss"):
        assert report["curves"][-1][name] < report["curves"][0][name], name
    assert AutoModel.from_pretrained(tmp_path / "run" / "backbone").config.architecture == "test_resnet"


def test_labels_stream_from_a_url_as_from_a_folder(mined, tmp_path):
    """Corpora larger than the disk stay remote: the labels folder may be any fsspec URL (file:// here)."""
    settings = PretrainingArguments(**TINY, max_steps=2, save_steps=100)
    report = pretrain_vise(f"file://{mined}", tmp_path / "run", settings)
    assert report["comment_clusters"] == 12 and report["max_steps"] == 2
    assert [r["post_id"] for r in load_mined_labels(f"file://{mined}").take(3)] == [
        r["post_id"] for r in load_mined_labels(mined).take(3)
    ]
