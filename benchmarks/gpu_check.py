#!/usr/bin/env python
"""GPU check: every compute path of the library on one GPU, in one short run.

Usage:
    python benchmarks/gpu_check.py [--output gpu_check.json]   # a CUDA GPU (sized for under 8 minutes on one H200)
    python benchmarks/gpu_check.py --dry-run                    # the same steps at demo size on the CPU (CI runs it)

It installs nothing beyond the project and prints, each figure beside its baseline from the same run:

- the device, its theoretical peak (:mod:`hf_memotion.hardware`) and its best measured kernels (fp32 and bf16
  matmul and convolution, :func:`hf_memotion.benchmarking.best_kernels`);
- **inference**: the paper-size ensemble (the paper's eight backbones at their real sizes with random weights:
  speed does not depend on the values), ten-crop on, a batch of 16 memes already preprocessed, bf16 weights
  against fp32 weights: memes/s and achieved TFLOP/s (FLOPs counted by torch's ``FlopCounterMode``), and the
  largest probability difference bf16 - fp32;
- **training**: one paper backbone (Inception-ResNet-v2 at 299 pixels, batch 32, bf16 autocast) on random
  images: images/s with the library's ``fit_classifier`` (its ``Trainer``) against a plain PyTorch loop doing the
  same work (same optimizer, no clipping, autocast), both timed from the end of the first step to the end of
  the last (set-up and warm-up left out);
- **VisE linear protocol** (augmented features, the paper's nine-point grid together): a ResNet-50 backbone
  (random weights) on its device, one epoch over demo CUB images decoded in the main process and in worker
  processes (``decode_workers``): images/s each;
- **VisE pretraining**: steps of ``ViseForPretraining`` on ResNeXt-101 32x16d (224 px, both heads: 5,000 comment
  and 128 reaction clusters), bf16 autocast, on random images and targets: images/s and achieved TFLOP/s;
- **VisE fine-tuning**: one grid point, one epoch of ``evaluate_backbone(..., "finetune")`` on ResNet-50 (its
  ``Trainer``) over demo CUB images: images/s, evaluation included;
- **mining with a transformer comment encoder**: ``TextEncoder.encode`` of a BERT-base-size encoder (random
  weights, a word-level tokenizer) on the device: comments/s;
- **explanations**: ``pipe(memes, explain=True)`` (Shapley shares, Grad-CAM through hooks, integrated gradients
  with cuDNN's RNN kernels off) on the Space-size ensemble on the device, against the same plain call: seconds per
  meme each and the multiple, and that the answers are the plain call's;
- **a joint member**: CLIP ViT-B/16-size towers (random weights) fused by interaction, training images/s with the
  towers frozen (Hate-CLIPper's setting) against fine-tuned (``fit_classifier``, bf16 autocast), and ten-crop
  inference memes/s;
- peak GPU memory.

``--dry-run`` swaps in the demo ensemble, timm's ``test_resnet`` at 64 pixels (32 for VisE) and a few steps, on
the CPU, so the script's code paths are tested without a GPU (``tests/test_benchmarking.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

#: CLIP ViT-B/16 at its published sizes (the joint member's GPU check), and a toy CLIP for the dry run.
_CLIP_B16 = {
    "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8},
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 16,
    },
}
_TINY_CLIP = {
    "text": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
    "vision": {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    },
}


def check_inference(size: str, device: torch.device, batch: int, repeats: int) -> dict[str, Any]:
    """Memes/s and TFLOP/s of the ensemble in fp32 and bf16 weights on a preprocessed batch."""
    from hf_memotion.benchmarking import ENSEMBLE_SIZES, best_seconds, count_flops, random_ensemble, sample_memes

    ensemble = random_ensemble(ENSEMBLE_SIZES[size]).optimize_for_inference()
    images, texts = sample_memes(batch, seed=1)
    inputs = ensemble.processor(images, texts, ten_crop=True)
    out: dict[str, Any] = {"size": size, "batch": batch, "crops_per_meme": 10}
    probabilities = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        ensemble.to(device).to_inference_dtype(dtype)  # what dtype=... loads (int8 text would stay as it is)
        run = lambda e=ensemble: e.probabilities_from_inputs(inputs)  # noqa: E731
        seconds = best_seconds(run, repeats, device)
        flop = count_flops(run)
        probabilities[name] = run()
        out[name] = {"seconds": seconds, "memes_per_s": batch / seconds, "tflops": flop / seconds / 1e12}
    out["flop_per_batch"] = flop
    out["bf16_speedup"] = out["fp32"]["seconds"] / out["bf16"]["seconds"]
    # what dtype="auto" would pick on this device for an ensemble timed like this (its accuracy check passed)
    from hf_memotion.ensemble.inference_dtype import auto_choice

    timed = {"macro_f1_change": {"subtask_a": 0.0}, "speed": {device.type: {"speedup": out["bf16_speedup"]}}}
    out["auto"] = [str(part).removeprefix("torch.") for part in auto_choice(timed, device)]
    out["max_probability_difference"] = max(
        float(abs(probabilities["bf16"][m][p] - probabilities["fp32"][m][p]).max())
        for m in probabilities["fp32"]
        for p in probabilities["fp32"][m]
    )
    ensemble.to("cpu")
    del ensemble
    return out


def _step_times(device: torch.device) -> Any:
    """A ``TrainerCallback`` whose ``times`` are when each optimizer step ended (the device synchronised)."""
    from transformers import TrainerCallback

    from hf_memotion.hardware import synchronize

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            synchronize(device)
            self.times.append(time.perf_counter())

    return StepTimes()


def check_training(architecture: str, image_size: int, device: torch.device, steps: int, batch: int) -> dict[str, Any]:
    """Images/s of ``fit_classifier`` (bf16 autocast) vs a plain loop on the same model, data and settings."""
    from hf_memotion.hardware import native_bf16, synchronize
    from hf_memotion.models.vision import MemotionVisionConfig, MemotionVisionForImageClassification
    from hf_memotion.tasks import PROBLEM_NAMES
    from hf_memotion.training import ClassifierTrainingArguments, fit_classifier

    problems = list(PROBLEM_NAMES)

    def make_model():
        return MemotionVisionForImageClassification(MemotionVisionConfig(architecture=architecture, problems=problems))

    generator = torch.Generator().manual_seed(0)
    rows = steps * batch
    pixels = torch.randn(rows, 3, image_size, image_size, generator=generator)
    labels = torch.stack([torch.randint(0, 2, (rows,), generator=generator) for _ in problems], dim=1)
    dataset = [{"pixel_values": pixels[i], "labels": labels[i]} for i in range(rows)]

    def collate(items):
        return {
            "pixel_values": torch.stack([r["pixel_values"] for r in items]),
            "labels": torch.stack([r["labels"] for r in items]),
        }

    bf16 = native_bf16(device)
    training = ClassifierTrainingArguments(
        optimizer="sgd",
        momentum=0.9,
        learning_rate=0.01,
        epochs=1,
        batch_size=batch,
        max_grad_norm=0.0,
        extra={"bf16": bf16},
    )

    def rate(times: list[float]) -> float:
        """Images/s between the first and the last step: set-up and the first (warm-up) step left out."""
        return (len(times) - 1) * batch / (times[-1] - times[0])

    with tempfile.TemporaryDirectory(prefix="hf_memotion_gpu_check_") as tmp:
        torch.manual_seed(0)
        steps_ours = _step_times(device)
        fit_classifier(
            make_model(), dataset, None, training, Path(tmp) / "ours", data_collator=collate, callbacks=[steps_ours]
        )
        ours = rate(steps_ours.times)
    torch.manual_seed(0)
    model = make_model().to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, collate_fn=collate)
    times = []
    for item in loader:
        item = {k: v.to(device, non_blocking=True) for k, v in item.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**item).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        times.append(time.perf_counter())
    plain = rate(times)
    return {
        "architecture": architecture,
        "image_size": image_size,
        "batch": batch,
        "steps": steps,
        "bf16": bf16,
        "ours_images_per_s": ours,
        "plain_images_per_s": plain,
        "ratio": ours / plain,
    }


def _demo_cub(per_class: int, image_size: int):
    """A demo CUB task in the release format (images a little larger than the crop), read."""
    from hf_memotion.data.downstream import read_task
    from hf_memotion.data.downstream_demo import make_demo_downstream

    folder = Path(tempfile.mkdtemp(prefix="hf_memotion_gpu_check_")) / "cub"
    root = make_demo_downstream(folder, "cub", n_per_class=per_class, image_size=int(image_size * 1.15))
    return read_task("cub", root)


def check_vise_linear(
    architecture: str, image_size: int, per_class: int, device: torch.device, workers: int, batch: int
) -> dict[str, Any]:
    """Images/s of one epoch of the augmented linear probe (nine grid points), images decoded here and in workers."""
    from hf_memotion.hardware import synchronize
    from hf_memotion.vise import evaluation

    task = _demo_cub(per_class, image_size)
    train = task.repeats[0]["train"]
    backbone = evaluation.load_backbone("random", f"random:{architecture}", image_size=image_size, device=device)
    settings = evaluation.ProtocolArguments(batch_size=batch, epochs=1)
    points = [(lr, wd) for wd in settings.weight_decays for lr in settings.base_learning_rates]
    out: dict[str, Any] = {"architecture": architecture, "image_size": image_size, "images": len(train)}
    for count in (0, workers):
        synchronize(device)
        start = time.perf_counter()
        evaluation._fit_linear_augmented(backbone, train, None, len(task.label_names), points, settings, False, count)
        synchronize(device)
        out[f"workers_{count}"] = {"images_per_s": len(train) / (time.perf_counter() - start)}
    out["workers"] = workers
    return out


def check_vise_pretraining(
    architecture: str, image_size: int, device: torch.device, steps: int, batch: int, clusters: tuple[int, int]
) -> dict[str, Any]:
    """Images/s and TFLOP/s of VisE pretraining steps (both heads, SGD, bf16 autocast where native)."""
    from hf_memotion.benchmarking import count_flops
    from hf_memotion.hardware import native_bf16, synchronize
    from hf_memotion.models.vise import ViseConfig, ViseForPretraining

    torch.manual_seed(0)
    config = ViseConfig(architecture=architecture, comment_clusters=clusters[0], reaction_clusters=clusters[1])
    model = ViseForPretraining(config).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pixels = torch.randn(batch, 3, image_size, image_size, device=device)
    targets = torch.softmax(torch.randn(batch, clusters[0], device=device), -1)
    reactions = torch.randint(0, clusters[1], (batch,), device=device)
    bf16 = native_bf16(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(pixel_values=pixels, comment_targets=targets, reaction_labels=reactions).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    flop = count_flops(step)  # also the warm-up step
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    return {
        "architecture": architecture,
        "image_size": image_size,
        "batch": batch,
        "bf16": bf16,
        "images_per_s": batch / seconds,
        "tflops": flop / seconds / 1e12,
    }


def check_vise_finetune(architecture: str, image_size: int, per_class: int, device: torch.device, batch: int):
    """Images/s of one grid point and one epoch of the fine-tuning protocol (evaluation included)."""
    from hf_memotion.vise import evaluation

    task = _demo_cub(per_class, image_size)
    backbone = evaluation.load_backbone("random", f"random:{architecture}", image_size=image_size, device=device)
    settings = evaluation.ProtocolArguments(
        batch_size=batch, epochs=1, base_learning_rates=[0.025], weight_decays=[0.0001]
    )
    images = sum(len(task.repeats[0][name]) for name in ("train", "validation", "test"))
    start = time.perf_counter()
    evaluation.evaluate_backbone(backbone, task, "finetune", settings, Path(tempfile.mkdtemp()))
    return {
        "architecture": architecture,
        "image_size": image_size,
        "images": images,
        "images_per_s": images / (time.perf_counter() - start),
    }


def check_mining_encoder(device: torch.device, comments: int, sizes: dict[str, int]) -> dict[str, Any]:
    """Comments/s of the mining comment encoder (a BERT-type encoder of the given sizes, random weights)."""
    from transformers import AutoModel

    from hf_memotion.hardware import synchronize
    from hf_memotion.models.text.tiny import build_tiny_text_backbone
    from hf_memotion.vise.text_encoder import TextEncoder

    words = [f"word{i}" for i in range(5000)]
    texts = [" ".join(words[(i * 7 + j) % 5000] for j in range(12)) for i in range(comments)]
    encoder = TextEncoder("tiny:bert", corpus=texts[:2000], device=device)
    config, _ = build_tiny_text_backbone("bert", texts[:2000], **sizes)
    encoder.model = AutoModel.from_config(config).eval().to(device)
    encoder.encode(texts[:64])  # warm-up
    synchronize(device)
    start = time.perf_counter()
    encoder.encode(texts, batch_size=256)
    synchronize(device)
    return {"comments": comments, **sizes, "comments_per_s": comments / (time.perf_counter() - start)}


def check_joint(device: torch.device, towers: dict[str, Any], steps: int, batch: int) -> dict[str, Any]:
    """A joint CLIP member with random weights at ``towers`` sizes: training and ten-crop inference speed.

    Training images/s (``fit_classifier``, bf16 autocast where native) with the towers frozen against fine-tuned.
    """
    from transformers import CLIPConfig

    from hf_memotion.hardware import native_bf16, synchronize
    from hf_memotion.models.multimodal import MemotionMultimodalConfig, MemotionMultimodalForClassification
    from hf_memotion.tasks import PROBLEM_NAMES
    from hf_memotion.training import ClassifierTrainingArguments, fit_classifier

    problems = list(PROBLEM_NAMES)
    clip = CLIPConfig(text_config=towers["text"], vision_config=towers["vision"])
    size, length = clip.vision_config.image_size, 32
    generator = torch.Generator().manual_seed(0)
    rows = steps * batch
    dataset = [
        {
            "pixel_values": torch.randn(3, size, size, generator=generator),
            "input_ids": torch.randint(0, clip.text_config.vocab_size, (length,), generator=generator),
            "attention_mask": torch.ones(length, dtype=torch.long),
            "labels": torch.randint(0, 2, (len(problems),), generator=generator),
        }
        for _ in range(rows)
    ]

    def collate(items):
        return {k: torch.stack([r[k] for r in items]) for k in items[0]}

    bf16 = native_bf16(device)
    training = ClassifierTrainingArguments(
        learning_rate=1e-4,
        epochs=1,
        batch_size=batch,
        early_stopping_patience=None,
        validation_fraction=0.0,
        extra={"bf16": bf16},
    )
    out: dict[str, Any] = {"towers": clip.vision_config.model_type, "image_size": size, "batch": batch, "bf16": bf16}
    model = None
    for frozen in (True, False):
        torch.manual_seed(0)
        config = MemotionMultimodalConfig(
            dual_encoder_config=clip,
            problems=problems,
            fusion="interaction",
            projection_dim=64,
            freeze_image_encoder=frozen,
            freeze_text_encoder=frozen,
        )
        model = MemotionMultimodalForClassification(config)
        times = _step_times(device)
        with tempfile.TemporaryDirectory(prefix="hf_memotion_gpu_check_") as tmp:
            fit_classifier(model, dataset, None, training, Path(tmp), data_collator=collate, callbacks=[times])
        rate = (len(times.times) - 1) * batch / (times.times[-1] - times.times[0])
        out["frozen_images_per_s" if frozen else "finetuned_images_per_s"] = rate
    out["frozen_speedup"] = out["frozen_images_per_s"] / out["finetuned_images_per_s"]
    model = model.to(device).eval()
    crops = torch.randn(batch, 10, 3, size, size, device=device)
    tokens = torch.randint(0, clip.text_config.vocab_size, (batch, length), device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        model(pixel_values=crops, input_ids=tokens)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(3):
            model(pixel_values=crops, input_ids=tokens)
        synchronize(device)
    out["inference_memes_per_s"] = 3 * batch / (time.perf_counter() - start)
    return out


def check_explanations(size: str, device: torch.device, batch: int) -> dict[str, Any]:
    """``explain=True`` against a plain pipeline call on the device: seconds per meme and the multiple."""
    from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble, sample_memes, time_interleaved
    from hf_memotion.pipelines import MemeEmotionPipeline

    ensemble = random_ensemble(ENSEMBLE_SIZES[size]).optimize_for_inference()
    pipe = MemeEmotionPipeline(model=ensemble, task="meme-emotion", device=device)
    images, texts = sample_memes(batch, seed=1)
    memes = [{"image": i, "text": t} for i, t in zip(images, texts, strict=True)]
    plain = pipe(memes, batch_size=batch)
    explained = pipe(memes, batch_size=batch, explain=True)
    same = all({k: v for k, v in e.items() if k != "explanation"} == p for e, p in zip(explained, plain, strict=True))
    timings = time_interleaved(
        {
            "plain": lambda: pipe(memes, batch_size=batch),
            "explain": lambda: pipe(memes, batch_size=batch, explain=True),
        },
        repeats=2,
    )
    ensemble.to("cpu")
    return {
        "size": size,
        "batch": batch,
        "plain_s_per_meme": timings["plain"].p50 / batch,
        "explain_s_per_meme": timings["explain"].p50 / batch,
        "multiple": timings["explain"].p50 / timings["plain"].p50,
        "same_answers": same,
        "heatmaps": sum(len(e["heatmaps"]) for e in explained[0]["explanation"].values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="demo sizes on the CPU: checks the script, no GPU")
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from hf_memotion.benchmarking import best_kernels
    from hf_memotion.hardware import theoretical_peak
    from hf_memotion.io_utils import atomic_write_text

    if args.dry_run:
        device = torch.device("cpu")
        plan = {
            "size": "demo",
            "batch": 4,
            "repeats": 1,
            "architecture": "test_resnet",
            "image_size": 64,
            "steps": 8,
            "train_batch": 8,
            "vise": {"architecture": "test_resnet", "image_size": 32, "per_class": 8, "workers": 2, "batch": 8},
            "pretraining": {
                "architecture": "test_resnet",
                "image_size": 32,
                "steps": 3,
                "batch": 8,
                "clusters": (50, 8),
            },
            "finetune": {"architecture": "test_resnet", "image_size": 32, "per_class": 6, "batch": 8},
            "mining": {"comments": 256, "sizes": {"hidden_size": 32, "num_layers": 2, "num_heads": 2}},
            "explain": {"size": "demo", "batch": 2},
            "joint": {"towers": _TINY_CLIP, "steps": 4, "batch": 4},
        }
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32
        plan = {
            "size": "paper",
            "batch": 16,
            "repeats": 3,
            "architecture": "inception_resnet_v2",
            "image_size": 299,
            "steps": 40,
            "train_batch": 32,
            "vise": {"architecture": "resnet50", "image_size": 224, "per_class": 200, "workers": 8, "batch": 128},
            "pretraining": {
                "architecture": "resnext101_32x16d",
                "image_size": 224,
                "steps": 10,
                "batch": 64,
                "clusters": (5000, 128),
            },
            "finetune": {"architecture": "resnet50", "image_size": 224, "per_class": 100, "batch": 64},
            "mining": {"comments": 20_000, "sizes": {"hidden_size": 768, "num_layers": 12, "num_heads": 12}},
            "explain": {"size": "space", "batch": 8},
            "joint": {"towers": _CLIP_B16, "steps": 20, "batch": 64},
        }
    else:
        print("error: no CUDA GPU here; run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    peak = theoretical_peak(device)
    kernels = best_kernels(device, repeats=1 if args.dry_run else 3)
    report: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "dry_run": args.dry_run,
        "peak": peak.as_dict(),
        "kernels": kernels,
    }
    print(f"device: {peak.name} ({device}), torch {torch.__version__}")
    print(
        f"theoretical peak: fp32 {peak.fp32_gflops or 0:.0f} GFLOP/s, bf16 {peak.bf16_gflops or 0:.0f} GFLOP/s "
        f"({peak.basis})"
    )
    for name, value in report["kernels"].items():
        print(f"  best {name.replace('_', ' ')}: {'not measured' if value is None else f'{value:.0f} GFLOP/s'}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    inference = check_inference(plan["size"], device, plan["batch"], plan["repeats"])
    report["inference"] = inference
    print(
        f"\ninference, {plan['size']} ensemble, batch {plan['batch']} memes x 10 crops "
        f"({inference['flop_per_batch'] / 1e12:.2f} TFLOP per batch):"
    )
    for name in ("fp32", "bf16"):
        row = inference[name]
        print(f"  {name} weights: {row['memes_per_s']:.1f} memes/s, {row['tflops']:.2f} TFLOP/s")
    print(
        f"  bf16 / fp32: {inference['bf16_speedup']:.2f}x; largest probability difference "
        f"{inference['max_probability_difference']:.2e}; dtype='auto' (accuracy check passed): "
        f"{inference['auto'][0]} ({inference['auto'][1]})"
    )
    training = check_training(plan["architecture"], plan["image_size"], device, plan["steps"], plan["train_batch"])
    report["training"] = training
    print(
        f"\ntraining, {training['architecture']} at {training['image_size']} px, batch {training['batch']}, "
        f"{'bf16 autocast' if training['bf16'] else 'fp32'}: fit_classifier {training['ours_images_per_s']:.1f} "
        f"images/s, plain loop {training['plain_images_per_s']:.1f} images/s ({training['ratio']:.2f}x)"
    )
    vise = check_vise_linear(device=device, **plan["vise"])
    report["vise_linear"] = vise
    with_workers = vise[f"workers_{vise['workers']}"]["images_per_s"]
    print(
        f"\nVisE linear protocol (augmented, 9 grid points), {vise['architecture']} at {vise['image_size']} px, "
        f"{vise['images']} images: {vise['workers_0']['images_per_s']:.1f} images/s decoded here, "
        f"{with_workers:.1f} with {vise['workers']} decode workers"
    )
    pretraining = check_vise_pretraining(device=device, **plan["pretraining"])
    report["vise_pretraining"] = pretraining
    print(
        f"\nVisE pretraining, {pretraining['architecture']} at {pretraining['image_size']} px, batch "
        f"{pretraining['batch']}{', bf16 autocast' if pretraining['bf16'] else ''}: "
        f"{pretraining['images_per_s']:.1f} images/s, {pretraining['tflops']:.2f} TFLOP/s"
    )
    finetune = check_vise_finetune(device=device, **plan["finetune"])
    report["vise_finetune"] = finetune
    print(
        f"\nVisE fine-tuning (one grid point, one epoch), {finetune['architecture']} at {finetune['image_size']} px, "
        f"{finetune['images']} images: {finetune['images_per_s']:.1f} images/s"
    )
    mining = check_mining_encoder(device=device, **plan["mining"])
    report["mining_encoder"] = mining
    print(
        f"\nmining comment encoder (BERT-type, {mining['num_layers']} layers of {mining['hidden_size']}): "
        f"{mining['comments_per_s']:.0f} comments/s over {mining['comments']} comments"
    )
    explained = check_explanations(device=device, **plan["explain"])
    report["explanations"] = explained
    print(
        f"\nexplain=True, {explained['size']} ensemble, batch {explained['batch']}: "
        f"{explained['explain_s_per_meme']:.3f} s per meme against {explained['plain_s_per_meme']:.3f} plain "
        f"({explained['multiple']:.1f}x); answers {'the same' if explained['same_answers'] else 'DIFFERENT'}"
    )
    joint = check_joint(device=device, **plan["joint"])
    report["joint"] = joint
    print(
        f"\njoint member, {joint['towers']} towers at {joint['image_size']} px, batch {joint['batch']}, "
        f"{'bf16 autocast' if joint['bf16'] else 'fp32'}: training {joint['frozen_images_per_s']:.1f} images/s with "
        f"frozen towers, {joint['finetuned_images_per_s']:.1f} fine-tuned ({joint['frozen_speedup']:.2f}x); "
        f"ten-crop inference {joint['inference_memes_per_s']:.1f} memes/s"
    )
    if device.type == "cuda":
        report["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"\npeak GPU memory: {report['peak_memory_gb']:.1f} GiB")
    if args.output:
        atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
