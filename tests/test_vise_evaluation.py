"""VisE downstream protocols: the real formats' readers, the grid with S_lr/S_wd, the script, the claim at toy scale."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hf_memotion  # noqa: F401
from hf_memotion.data.downstream import random_splits, read_task
from hf_memotion.data.downstream_demo import DEMO_TASK_FORMATS, make_demo_downstream
from hf_memotion.models.vise import ViseConfig, ViseModel
from hf_memotion.vise.evaluation import ProtocolArguments, evaluate_backbone, load_backbone, sensitivity
from hf_memotion.vise.text_encoder import TextEncoder

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "evaluate_vise.py"


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    base = tmp_path_factory.mktemp("vise_tasks")
    return {kind: make_demo_downstream(base / kind, kind, n_per_class=6, image_size=24) for kind in DEMO_TASK_FORMATS}


def _disjoint_and_complete(splits, total):
    seen = [p for split in splits.values() for p in split["image"]]
    assert len(seen) == len(set(seen)) == total


def test_unbiased_emotion_gives_five_random_70_10_20_splits_with_classes_by_name(fixtures):
    task = read_task("unbiased_emotion", fixtures["unbiased_emotion"])
    assert task.label_names == ["anger", "fear", "joy", "love", "sadness", "surprise"]
    assert len(task.repeats) == 5 and task.metric == "accuracy" and not task.has_text
    for repeat in task.repeats:
        _disjoint_and_complete(repeat, 36)
        assert {k: len(v) for k, v in repeat.items()} == {"train": 24, "validation": 6, "test": 6}
        for row in repeat["train"]:  # the label is the emotion folder's index
            assert Path(row["image"]).parts[-3] == task.label_names[row["label"]]
    assert task.repeats[0]["test"]["image"] != task.repeats[1]["test"]["image"]


def test_hateful_memes_tests_on_the_labelled_dev_set_and_carries_texts(fixtures):
    task = read_task("hateful_memes", fixtures["hateful_memes"])
    splits = task.repeats[0]
    assert task.metric == "roc_auc" and task.has_text and task.label_names == ["not_hateful", "hateful"]
    dev = [json.loads(line) for line in (fixtures["hateful_memes"] / "dev.jsonl").read_text().splitlines()]
    assert splits["test"]["label"] == [r["label"] for r in dev] and splits["test"]["text"] == [r["text"] for r in dev]
    assert len(splits["train"]) + len(splits["validation"]) == 27 and all(
        Path(p).is_file() for p in splits["train"]["image"]
    )


def test_cub_keeps_the_official_test_split_and_class_names(fixtures):
    task = read_task("cub", fixtures["cub"])
    splits = task.repeats[0]
    assert task.label_names[0] == "Fire_Theme" and len(task.label_names) == 6
    flags = dict(line.split() for line in (fixtures["cub"] / "train_test_split.txt").read_text().splitlines())
    paths = dict(line.split() for line in (fixtures["cub"] / "images.txt").read_text().splitlines())
    official_test = {str(fixtures["cub"] / "images" / paths[i]) for i, flag in flags.items() if flag == "0"}
    assert set(splits["test"]["image"]) == official_test
    _disjoint_and_complete(splits, 36)


def test_image_folder_with_and_without_split_folders(fixtures, tmp_path):
    task = read_task("image_folder", fixtures["image_folder"])
    assert task.label_names == ["fire", "forest", "party", "rain", "sea", "sun"]
    _disjoint_and_complete(task.repeats[0], 36)
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "dog"))):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(4):
                (tmp_path / split / name / f"{i}.png").write_bytes(
                    (fixtures["image_folder"] / "sun" / "0000.png").read_bytes()
                )
    split_task = read_task("image_folder", tmp_path)
    assert {k: len(v) for k, v in split_task.repeats[0].items()} == {"train": 6, "validation": 2, "test": 8}


def test_readers_name_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="UnbiasedEmotion layout"):
        read_task("unbiased_emotion", tmp_path)
    with pytest.raises(FileNotFoundError, match="train.jsonl and dev.jsonl"):
        read_task("hateful_memes", tmp_path)
    (tmp_path / "train.jsonl").write_text('{"id": 1, "img": "img/1.png", "label": 0, "text": "x"}\n{"id": 2}\n')
    (tmp_path / "dev.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"train.jsonl line 2 lacks \['img', 'label', 'text'\]"):
        read_task("hateful_memes", tmp_path)
    with pytest.raises(FileNotFoundError, match="images.txt is missing"):
        read_task("cub", tmp_path)
    with pytest.raises(ValueError, match="fractions must sum to 1"):
        random_splits([0, 1], (0.5, 0.6), seed=0)


def test_sensitivity_is_the_std_across_one_axis_at_the_best_other():
    grid = {(lr, wd): 0.0 for lr in (0.025, 0.0025, 0.00025) for wd in (0.01, 0.001, 0.0001)}
    grid.update({(0.025, 0.001): 90.0, (0.0025, 0.001): 60.0, (0.00025, 0.001): 30.0, (0.025, 0.01): 84.0})
    result = sensitivity(grid)
    assert result["best"] == [0.025, 0.001]
    assert result["s_lr"] == pytest.approx(np.std([90.0, 60.0, 30.0]), abs=1e-4)
    assert result["s_wd"] == pytest.approx(np.std([84.0, 90.0, 0.0]), abs=1e-4)


def test_the_linear_grid_runs_all_nine_points_and_resumes(fixtures, tmp_path):
    task = read_task("image_folder", fixtures["image_folder"])
    backbone = load_backbone("random", "random:test_resnet", image_size=24)
    settings = ProtocolArguments(batch_size=8, epochs=3)
    first = evaluate_backbone(backbone, task, "linear", settings, tmp_path)
    grid = first["per_split"][0]["grid"]
    assert len(grid) == 9 and {g["base_lr"] for g in grid} == {0.025, 0.0025, 0.00025}
    chosen = max(grid, key=lambda g: g["validation"]["accuracy"])
    assert first["validation_accuracy_mean"] == chosen["validation"]["accuracy"]
    assert len(list((tmp_path / "runs" / "image_folder" / "random" / "linear").rglob("*.json"))) == 9
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.json")}
    again = evaluate_backbone(backbone, task, "linear", settings, tmp_path)
    assert again == first and stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.json")}
    with pytest.raises(ValueError, match="text encoder"):
        evaluate_backbone(backbone, read_task("hateful_memes", fixtures["hateful_memes"]), "linear", settings, tmp_path)


def test_text_encoder_gives_masked_mean_embeddings():
    encoder = TextEncoder("tiny:bert", corpus=["look at this", "this one is fire"])
    single = encoder.encode(["look at this"])
    padded = encoder.encode(["look at this", "this one is fire look at this again"])
    assert np.allclose(single[0], padded[0], atol=1e-5)  # padding does not change an embedding


@pytest.mark.slow
def test_the_script_runs_the_full_grid_on_every_real_format(fixtures, tmp_path):
    torch.manual_seed(0)
    ViseModel(ViseConfig(architecture="test_resnet")).save_pretrained(tmp_path / "vise")
    config = {
        "output_dir": str(tmp_path / "eval"),
        "backbones": {"vise": str(tmp_path / "vise"), "random-init": "random:test_resnet"},
        "reference": {"test_resnet": "random-init"},  # each row against the reference of its own architecture
        "image_size": 24,
        "tasks": [
            {
                "name": kind,
                "format": kind,
                "path": str(fixtures[kind]),
                **(
                    {
                        "text_encoder": "tiny:bert",
                        "settings": ["image_text_frozen", "image_text_finetuned", "image_only"],
                    }
                    if kind == "hateful_memes"
                    else {}
                ),
                **({"options": {"n_splits": 2}} if kind == "unbiased_emotion" else {}),
            }
            for kind in DEMO_TASK_FORMATS
        ],
        "linear": {"batch_size": 16, "epochs": 2},
        "finetune": {"batch_size": 16, "epochs": 1},
    }
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"HF_MEMOTION_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())
    # 4 image tasks x 2 protocols + Hateful Memes: frozen text (2 protocols), both fine-tuned (1), image only (2)
    assert len(rows) == (4 * 2 + 5) * 2
    assert {r["task"] for r in rows} == {
        *DEMO_TASK_FORMATS,
        "hateful_memes (image text finetuned)",
        "hateful_memes (image only)",
    }
    optimizers = {(r["setting"], r["protocol"]): r["optimizer"] for r in rows if r["task"].startswith("hateful")}
    assert optimizers == {
        ("image_text_frozen", "linear"): "adamw",
        ("image_text_frozen", "finetune"): "adamw",
        ("image_text_finetuned", "finetune"): "adamw",
        ("image_only", "linear"): "sgd",
        ("image_only", "finetune"): "sgd",
    }
    for row in rows:
        assert {"s_lr", "s_wd", "base_lr", "weight_decay"} <= set(row)
        assert all(len(split["grid"]) == 9 for split in row["per_split"])
    hateful = next(r for r in rows if r["task"] == "hateful_memes")
    assert 0.0 <= hateful["test_roc_auc_mean"] <= 1.0 and "test_accuracy_mean" in hateful
    assert next(r for r in rows if r["task"] == "unbiased_emotion")["splits"] == 2
    report = (tmp_path / "eval" / "results.md").read_text()
    assert "Table 6 form" in report and "Table 7 form" in report and "| S_lr | S_wd |" in report
    assert "`random-init` for test_resnet" in report and "same transforms" in report
    vise_row = next(line for line in report.splitlines() if line.startswith("| vise |"))
    assert re.search(r"\([+-]\d", vise_row)  # its differences from random-init, the reference of its architecture
    assert all(r["preprocessing"] == {"crop_pct": 0.875, "interpolation": "bilinear"} for r in rows)
    assert (tmp_path / "eval" / "results.png").stat().st_size > 0 and (tmp_path / "eval" / "grids.png").is_file()
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), str(path), "reference=imagenet"], capture_output=True, text=True, cwd=tmp_path
    )
    assert bad.returncode != 0 and "reference 'imagenet' is not one of the backbones" in bad.stderr


@pytest.mark.slow
def test_pretraining_on_demo_labels_beats_random_init_in_linear_evaluation(tmp_path):
    """The VisE claim at toy scale: mine -> pretrain -> linear probe, against the same probe on random weights."""
    from hf_memotion.data.engagement import make_demo_engagement
    from hf_memotion.vise import MiningSpec, PretrainingArguments, mine_labels, pretrain_vise

    corpus = make_demo_engagement(tmp_path / "posts", n_posts=1200, n_shards=4, seed=0, image_size=32)
    mine_labels(
        corpus,
        tmp_path / "mined",
        MiningSpec(comment_clusters=24, reaction_clusters=8, holdout_fraction=0.2, embedding_dim=32),
    )
    settings = PretrainingArguments(
        architecture="resnet10t",
        image_size=32,
        batch_size=32,
        epochs=4,
        shuffle_buffer=500,
        base_learning_rate=0.4,
        save_steps=1000,
    )
    report = pretrain_vise(tmp_path / "mined", tmp_path / "pre", settings)
    first, last = report["curves"][0], report["curves"][-1]
    assert last["comment_loss"] < first["comment_loss"] and last["reaction_loss"] < first["reaction_loss"]
    task = read_task(
        "image_folder",
        make_demo_downstream(tmp_path / "task", "image_folder", n_per_class=12, image_size=32),
        n_splits=3,
    )
    protocol = ProtocolArguments(batch_size=16, epochs=20)
    scores = {}
    for name, source in (("vise", str(tmp_path / "pre" / "backbone")), ("random", "random:resnet10t")):
        backbone = load_backbone(name, source, image_size=32)
        scores[name] = evaluate_backbone(backbone, task, "linear", protocol, tmp_path / "eval")["test_accuracy_mean"]
    print("linear-probe test accuracy", scores)
    assert scores["vise"] > scores["random"] + 10.0, scores


def test_demo_tasks_are_reused_rewritten_or_refused(tmp_path):
    root = make_demo_downstream(tmp_path / "task", "image_folder", n_per_class=4, image_size=16)
    assert sum(task_split for task_split in read_task("image_folder", root).sizes().values()) == 24
    first = sorted(p.name for p in (root / "sun").iterdir())
    again = make_demo_downstream(tmp_path / "task", "image_folder", n_per_class=2, image_size=16)
    assert sorted(p.name for p in (again / "sun").iterdir()) == first[:2]  # no image of the larger task is left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my data")
    with pytest.raises(FileExistsError, match="did not write"):
        make_demo_downstream(tmp_path / "mine", "cub", n_per_class=2)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my data"
