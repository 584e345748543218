"""The VisE evaluation as the paper runs it: Politics, Hateful Memes' three settings, per-task schedules, --plan."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

import hf_memotion  # noqa: F401
from hf_memotion.data.downstream import read_task
from hf_memotion.data.downstream_demo import make_demo_downstream
from hf_memotion.training.trainer import MemotionTrainer
from hf_memotion.vise import evaluation
from hf_memotion.vise.commands import plan_evaluation
from hf_memotion.vise.evaluation import ProtocolArguments, evaluate_backbone, load_backbone
from hf_memotion.vise.specs import EvaluationRunSpec
from hf_memotion.vise.text_encoder import TextEncoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper_tasks")
    return {
        kind: make_demo_downstream(base / kind, kind, n_per_class=6, image_size=24)
        for kind in ("politics", "hateful_memes", "cub")
    }


def test_politics_reads_both_layouts_with_the_papers_split(tasks, tmp_path):
    task = read_task("politics", tasks["politics"])
    splits = task.repeats[0]
    assert task.label_names == ["left", "right"] and task.metric == "accuracy" and not task.has_text
    official_test = sorted(str(p) for p in (tasks["politics"] / "test").rglob("*.png"))
    assert sorted(splits["test"]["image"]) == official_test  # the official test set, untouched
    train = len(list((tasks["politics"] / "train").rglob("*.png")))
    per_class = train // 2  # 10% of each class is the validation split (random_splits rounds the 90% share)
    assert len(splits["train"]) + len(splits["validation"]) == train
    assert len(splits["validation"]) == 2 * (per_class - round(per_class * 0.9))
    for row in splits["train"]:
        assert Path(row["image"]).parent.name == task.label_names[row["label"]]
    # the CSV layout: image paths relative to the folder, labels as names or 0/1
    for name in ("train", "test"):
        rows = [
            f"{Path(p).relative_to(tasks['politics'])},{Path(p).parent.name}"
            for p in sorted((tasks["politics"] / name).rglob("*.png"))
        ]
        (tmp_path / f"{name}.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    csv_task = read_task("politics", tmp_path)
    assert len(csv_task.repeats[0]["test"]) == len(official_test) and csv_task.label_names == ["left", "right"]
    (tmp_path / "test.csv").write_text("image,label\nx.png,centre\n")
    with pytest.raises(ValueError, match=r"test.csv line 2: label 'centre' is not left/right"):
        read_task("politics", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train/\{left,right\}/"):
        read_task("politics", tmp_path / "nowhere")


@pytest.mark.parametrize("kind", ["hateful_memes", "cub"])
def test_paper_selection_trains_on_all_of_train_and_selects_on_the_reported_split(tasks, kind):
    held = read_task(kind, tasks[kind]).repeats[0]
    paper = read_task(kind, tasks[kind], selection="paper").repeats[0]
    images = {
        name: {f"{mode}/{split}": list(splits[split]["image"]) for split in splits}
        for name, (mode, splits) in {"paper": ("paper", paper), "held": ("held", held)}.items()
    }
    assert images["paper"]["paper/validation"] == images["paper"]["paper/test"] == images["held"]["held/test"]
    assert sorted(images["paper"]["paper/train"]) == sorted(
        images["held"]["held/train"] + images["held"]["held/validation"]
    )
    assert not set(images["held"]["held/validation"]) & set(images["held"]["held/test"])
    with pytest.raises(ValueError, match="selection must be 'held_out' or 'paper'"):
        read_task(kind, tasks[kind], selection="best")


def test_hateful_memes_in_its_three_settings_with_adam_for_multimodal_runs(tasks, tmp_path, monkeypatch):
    task = read_task("hateful_memes", tasks["hateful_memes"])
    backbone = load_backbone("random", "random:test_resnet", image_size=24)
    encoder = TextEncoder("tiny:bert", corpus=task.repeats[0]["train"]["text"])
    settings = ProtocolArguments(batch_size=8, epochs=1, base_learning_rates=[0.025], weight_decays=[0.01])
    used = []
    create = MemotionTrainer.create_optimizer
    monkeypatch.setattr(
        MemotionTrainer,
        "create_optimizer",
        lambda self, model=None: used.append(type(create(self, model)).__name__) or self.optimizer,
    )
    layers = evaluation._linear_layers
    monkeypatch.setattr(
        evaluation, "_linear_layers", lambda *a: used.append(type(layers(*a)[0][1]).__name__) or layers(*a)
    )
    rows = {}
    for setting, protocol in (
        ("image_text_frozen", "linear"),
        ("image_text_frozen", "finetune"),
        ("image_text_finetuned", "finetune"),
        ("image_only", "linear"),
        ("image_only", "finetune"),
    ):
        used.clear()
        rows[setting, protocol] = evaluate_backbone(
            backbone, task, protocol, settings, tmp_path, encoder, setting=setting
        )
        assert used == ["AdamW" if setting != "image_only" else "SGD"], (setting, protocol, used)
        assert 0.0 <= rows[setting, protocol]["test_roc_auc_mean"] <= 1.0
    # an image-only run needs no text encoder; both encoders training together is a fine-tuning setting
    assert (
        evaluate_backbone(backbone, task, "linear", settings, tmp_path, setting="image_only")["setting"] == "image_only"
    )
    with pytest.raises(ValueError, match="fine-tuned only"):
        evaluate_backbone(backbone, task, "linear", settings, tmp_path, encoder, setting="image_text_finetuned")
    with pytest.raises(ValueError, match="only the image_only setting"):
        evaluate_backbone(
            backbone, read_task("cub", tasks["cub"]), "linear", settings, tmp_path, encoder, setting="image_text_frozen"
        )
    # the image-only and frozen-text results are different runs, kept apart on disk
    assert (tmp_path / "runs" / "hateful_memes" / "random" / "linear-image_only").is_dir()
    assert (tmp_path / "runs" / "hateful_memes" / "random" / "finetune-image_text_finetuned").is_dir()


def test_the_text_encoder_is_trained_in_the_both_fine_tuned_setting_only(tasks, tmp_path, monkeypatch):
    task = read_task("hateful_memes", tasks["hateful_memes"])
    backbone = load_backbone("random", "random:test_resnet", image_size=24)
    encoder = TextEncoder("tiny:bert", corpus=task.repeats[0]["train"]["text"])
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    trained = []
    real = evaluation.ImageTextClassifier

    def spy(image, text, num_labels):
        model = real(image, text, num_labels)
        trained.append(model)
        return model

    monkeypatch.setattr(evaluation, "ImageTextClassifier", spy)
    settings = ProtocolArguments(batch_size=8, epochs=2, base_learning_rates=[0.025], weight_decays=[0.0001])
    evaluate_backbone(backbone, task, "finetune", settings, tmp_path, encoder, setting="image_text_finetuned")
    (model,) = trained
    moved = [k for k, v in model.text.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved  # the copy of the text encoder was trained ...
    assert all(torch.equal(v, before[k]) for k, v in encoder.model.state_dict().items())  # ... the shared one is not


def test_the_augmented_linear_probe_runs_the_backbone_once_per_batch_for_the_whole_grid(tasks, tmp_path, monkeypatch):
    task = read_task("cub", tasks["cub"])
    backbone = load_backbone("random", "random:test_resnet", image_size=24)
    calls = []
    forward = backbone.model.forward
    monkeypatch.setattr(backbone.model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    settings = ProtocolArguments(batch_size=8, epochs=2)
    augmented = evaluate_backbone(backbone, task, "linear", settings, tmp_path, linear_features="augmented")
    batches = -(-len(task.repeats[0]["train"]) // 8)
    evaluation_batches = sum(-(-len(task.repeats[0][n]) // settings.eval_batch_size) for n in ("validation", "test"))
    assert len(calls) == 2 * batches + evaluation_batches  # not x 9 grid points
    assert len(augmented["per_split"][0]["grid"]) == 9 and augmented["linear_features"] == "augmented"
    evaluate_backbone(backbone, task, "linear", settings, tmp_path)  # cached: its own folder, no clash
    assert {p.name for p in (tmp_path / "runs" / "cub" / "random").iterdir()} == {"linear"}
    assert len(list((tmp_path / "runs" / "cub" / "random" / "linear").rglob("*.json"))) == 9  # keyed apart


def test_the_grid_trained_together_equals_each_point_trained_alone_on_the_same_features(tasks, monkeypatch):
    """With the augmentation swapped for the centre crop, the shared-batch grid gives each point's cached result."""
    task = read_task("cub", tasks["cub"])
    train = task.repeats[0]["train"]
    backbone = load_backbone("random", "random:test_resnet", image_size=24)
    settings = ProtocolArguments(
        batch_size=8,
        epochs=3,
        lr_epochs=[2],
        lr_decay=0.1,
        base_learning_rates=[25.0, 2.5],
        weight_decays=[0.01, 0.0001],
    )  # rates that move the classifiers visibly
    points = [(lr, wd) for wd in settings.weight_decays for lr in settings.base_learning_rates]
    cached = (evaluation._features(backbone, train, 64).astype("float32"), np.asarray(train["label"]))
    alone = [evaluation._fit_linear(cached, 6, point, settings, adamw=False) for point in points]
    augmented = evaluation._fit_linear_augmented(backbone, train, None, 6, points, settings, adamw=False)
    monkeypatch.setattr(backbone.processor, "train_transform", lambda: backbone.processor.eval_transform(False))
    together = evaluation._fit_linear_augmented(backbone, train, None, 6, points, settings, adamw=False)
    for one, other in zip(alone, together, strict=True):
        torch.testing.assert_close(one.weight, other.weight, atol=1e-4, rtol=1e-3)
    gaps = [(one.weight - drawn.weight).abs().max().item() for one, drawn in zip(alone, augmented, strict=True)]
    assert max(gaps) > 1e-3  # with the real augmentation the features, hence the classifiers, differ


def test_images_decoded_by_worker_processes_give_the_same_cached_results(tasks, tmp_path):
    task = read_task("cub", tasks["cub"])
    backbone = load_backbone("random", "random:test_resnet", image_size=24, device="cpu")
    assert backbone.model.device.type == "cpu"
    settings = ProtocolArguments(batch_size=8, epochs=2, base_learning_rates=[2.5], weight_decays=[0.001])
    here = evaluate_backbone(backbone, task, "linear", settings, tmp_path / "here")
    workers = evaluate_backbone(backbone, task, "linear", settings, tmp_path / "workers", decode_workers=2)
    assert workers == here  # centre crops: the same features whoever decodes them

    # augmented crops drawn in workers are seeded too (the same on every run), and keyed apart from the main process's
    def augmented(folder, workers):
        return evaluate_backbone(
            backbone, task, "linear", settings, folder, linear_features="augmented", decode_workers=workers
        )

    assert augmented(tmp_path / "aug", 2) == augmented(tmp_path / "aug_again", 2)
    augmented(tmp_path / "aug_main", 0)

    def key(folder):
        return json.loads(sorted(folder.rglob("*.json"))[0].read_text())["key"]

    assert key(tmp_path / "aug") == key(tmp_path / "aug_again") != key(tmp_path / "aug_main")


def test_the_evaluation_names_an_impossible_device_or_worker_count():
    from hf_memotion.hardware import resolve_device
    from hf_memotion.vise.specs import EvaluationRunSpec

    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="decode_workers must be 0 or more"):
        EvaluationRunSpec.from_dict(
            {"backbones": {"r": "random:test_resnet"}, "tasks": [{"format": "cub", "path": "x"}], "decode_workers": -1}
        )


def test_decay_at_the_papers_epochs_in_both_protocols():
    settings = ProtocolArguments(epochs=30, lr_epochs=[20], lr_decay=0.5)  # Hateful Memes: x0.5 from epoch 20
    schedule = settings.epoch_schedule()
    assert [schedule(e) for e in (0, 19, 20, 29)] == [1.0, 1.0, 0.5, 0.5]
    fraction = ProtocolArguments(epochs=30, lr_steps=[0.667], lr_decay=0.5).epoch_schedule()
    assert fraction(20) == 1.0 and fraction(21) == 0.5  # the fraction of before decayed one epoch late
    args = settings.to_training_arguments(
        "/tmp/hf_memotion_protocol_args", learning_rate=0.1, weight_decay=0.0, adamw=False
    )
    assert (args.lr_milestones, args.lr_milestone_unit, args.lr_decay) == ([20.0], "epoch", 0.5)
    with pytest.raises(ValueError, match="inside the 30 epochs"):
        ProtocolArguments(epochs=30, lr_epochs=[30])


def test_task_schedules_and_batch_sizes_per_backbone_layer_over_the_protocol():
    spec = EvaluationRunSpec.from_dict(
        {
            "backbones": {"a": "random:resnet50", "b": {"source": "random:resnet18"}},
            "linear": {"epochs": 5, "batch_size": 32},
            "tasks": [
                {
                    "format": "cub",
                    "path": "x",
                    "schedule": {"epochs": 300, "lr_epochs": [100, 200], "lr_decay": 0.1},
                    "finetune": {"epochs": 250},
                    "batch_sizes": {"resnet50": 128, "b": 7},
                }
            ],
        }
    )
    task = spec.tasks[0]
    linear = spec.protocol_settings("linear", task, "a", "resnet50")
    assert (linear.epochs, linear.lr_epochs, linear.batch_size) == (300, [100, 200], 128)
    assert spec.protocol_settings("finetune", task, "b", "resnet18").epochs == 250
    assert spec.protocol_settings("linear", task, "b", "resnet18").batch_size == 7  # by name before architecture
    with pytest.raises(Exception, match="unknown key 'epoch'"):
        EvaluationRunSpec.from_dict(
            {"backbones": {"a": "random:resnet50"}, "tasks": [{"format": "cub", "path": "x", "schedule": {"epoch": 3}}]}
        )


def test_a_timm_reference_backbone_loads_imagenet_weights_from_a_file_or_says_why_not(tmp_path, monkeypatch):
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("test_resnet", num_classes=0)
    save_file(reference.state_dict(), tmp_path / "in1k.safetensors")
    backbone = load_backbone("in-sup", "timm:test_resnet", pretrained_file=str(tmp_path / "in1k.safetensors"))
    for key, value in reference.state_dict().items():
        assert torch.equal(backbone.model.timm_model.state_dict()[key], value), key
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="timm could not load ImageNet weights for 'resnet18.a1_in1k'"):
        load_backbone("in-sup", "timm:resnet18.a1_in1k")


def test_the_paper_config_plans_every_grid_point_with_the_papers_schedules():
    spec = EvaluationRunSpec.from_dict(yaml.safe_load((ROOT / "configs" / "vise_eval_paper.yaml").read_text()))
    plan = plan_evaluation(spec)
    assert spec.selection == "paper" and spec.linear_features == "augmented"

    def rows(task, backbone, protocol, setting=None):
        found = [
            p
            for p in plan.points
            if (p["task"], p["backbone"], p["protocol"]) == (task, backbone, protocol)
            and (setting is None or p["setting"] == setting)
        ]
        assert len(found) == 9, (task, backbone, protocol, setting)  # the 3 x 3 grid
        return found

    politics = rows("politics", "vise-1.2m-resnet50", "finetune")[0]  # Table 11
    assert (politics["batch_size"], politics["epochs"], politics["lr_epochs"], politics["lr_decay"]) == (
        192,
        25,
        [10, 20],
        0.1,
    )
    hateful = rows("hateful_memes", "vise-250m-resnext101", "linear")  # Table 12
    assert {(p["batch_size"], p["epochs"], tuple(p["lr_epochs"]), p["lr_decay"], p["optimizer"]) for p in hateful} == {
        (16, 30, (20,), 0.5, "adamw")
    }
    assert sorted({p["learning_rate"] for p in hateful}) == pytest.approx(
        [0.025 / 256 * 16 / 100, 0.025 / 256 * 16 / 10, 0.025 / 256 * 16]
    )
    assert rows("hateful_memes (image text finetuned)", "vise-250m-resnext101", "finetune")  # Table 14
    assert not [p for p in plan.points if p["setting"] == "image_text_finetuned" and p["protocol"] == "linear"]
    image_only = rows("hateful_memes (image only)", "in-sup-resnet50", "linear")[0]  # Table 16
    assert (image_only["batch_size"], image_only["optimizer"]) == (64, "sgd")
    cub = rows("cub", "vise-1.2m-resnet50", "linear")[0]  # Table 13
    assert (cub["batch_size"], cub["epochs"], cub["lr_epochs"]) == (128, 300, [100, 200])
    assert rows("unbiased_emotion", "random-init-resnext101", "finetune")[0]["splits"] == 5  # Table 10: 5 splits
    assert rows("unbiased_emotion", "vise-1.2m-resnet101", "finetune")[0]["batch_size"] == 64  # Table 7's rows only
    assert not [p for p in plan.points if p["backbone"] == "vise-1.2m-resnet101" and p["protocol"] == "linear"]
    clip = [
        p for p in plan.points if (p["task"], p["backbone"], p["protocol"]) == ("politics", "clip-resnet50", "finetune")
    ]  # the paper's wider grid for CLIP: 5 base rates x 3 decays
    assert len(clip) == 15 and sorted({p["base_lr"] for p in clip}) == sorted([0.025, 0.0025, 0.00025, 2.5e-5, 2.5e-6])


def test_the_paper_config_plans_every_row_of_tables_6_7_and_2_with_its_backbone_kind():
    spec = EvaluationRunSpec.from_dict(yaml.safe_load((ROOT / "configs" / "vise_eval_paper.yaml").read_text()))
    tables = plan_evaluation(spec).table_rows()
    per_group = {"resnet50": 10, "resnet101": 3, "resnext101_32x16d": 5}  # the rows of the paper's Table 7
    # Table 6 (linear) and Table 7 (fine-tuned): every row on UnbiasedEmotion, Politics and Hateful Memes
    assert len(tables["Table 6"]) == 3 * (per_group["resnet50"] + per_group["resnext101_32x16d"])
    assert len(tables["Table 7"]) == 3 * sum(per_group.values())
    assert len(tables["Table 2"]) == 2 * 9  # CUB: 4 ResNet-50 and 5 ResNeXt-101 rows, both protocols
    methods = {(r["group"], r["kind"]) for r in tables["Table 6"]}
    for kind in ("vqagrid", "virtex", "icmlm", "moco", "clip"):
        assert ("resnet50", kind) in methods  # the baselines sit in the ResNet-50 group, compared with its IN-Sup
    assert {r["kind"] for r in tables["Table 2"]} == {"random", "timm", "vise"}
    assert {spec.reference_of(r["backbone"]) for r in tables["Table 7"] if r["group"] == "resnet101"} == {
        "in-sup-resnet101"
    }
    assert "assumed" in (spec.tasks[0].schedule_note or "")  # UnbiasedEmotion's schedule, said so
    unverified = [n for n in plan_evaluation(spec).notes if "UNVERIFIED" in n]  # ICMLM's layout, said so per row
    assert [n.split(" rows")[0] for n in unverified] == ["icmlm-att-fc-resnet50", "icmlm-tfm-resnet50"]


def test_evaluate_script_plan_prints_the_grid_and_runs_nothing(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate_vise.py"),
            str(ROOT / "configs" / "vise_eval_paper.yaml"),
            f"output_dir={tmp_path / 'out'}",
            "--plan",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    row = "| politics | image_only | vise-1.2m-resnet50 | resnet50 | finetune | 192 | 25 epochs, x0.1 at epochs 10, 20 "
    assert row in run.stdout
    assert "selection: paper" in run.stdout and not (tmp_path / "out").exists()
    assert "GPU-hours per task and protocol: unbiased_emotion linear" in run.stdout
    assert "politics finetune" in run.stdout


def test_the_plan_counts_each_protocols_compute_from_the_tasks_sizes():
    spec = EvaluationRunSpec.from_dict(
        {
            "backbones": {"r50": "random:resnet50"},
            "image_size": 224,
            "linear_features": "augmented",
            "device_tflops": 50,
            "tasks": [
                {"format": "cub", "path": "data/cub", "schedule": {"epochs": 10}},
                {"format": "image_folder", "path": "data/x", "images": {"train": 100, "validation": 10, "test": 20}},
                {"format": "image_folder", "name": "unknown", "path": "data/y"},
            ],
        }
    )
    plan = plan_evaluation(spec)
    rows = {(c["task"], c["protocol"]): c for c in plan.compute}
    forward = rows[("cub", "linear")]["forward_gflops"] * 1e9
    assert 7.5e9 < forward < 9e9  # ResNet-50 at 224 px: about 4.1 G multiply-adds
    # augmented linear: the 5,994 training images every epoch (once for the nine points), the 5,794 test images once
    assert rows[("cub", "linear")]["images_seen"] == 10 * 5_994 + 5_794
    # fine-tuning: per grid point, forward and backward (3 forwards) over the training images every epoch
    finetune = rows[("cub", "finetune")]
    assert finetune["flops"] == pytest.approx(9 * (3 * 10 * 5_994 + 5_794) * forward, rel=1e-6)
    assert finetune["gpu_hours"] == pytest.approx(finetune["flops"] / 50e12 / 3600)
    assert rows[("image_folder", "linear")]["images_seen"] == 30 * 100 + 30  # its own sizes (30 epochs by default)
    assert rows[("unknown", "linear")]["gpu_hours"] is None and "sizes unknown" in " ".join(plan.notes)
    assert "GPU-hours per task and protocol: cub linear" in plan.format()
