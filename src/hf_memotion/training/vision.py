"""Train the paper's visual model on Memotion data: augmentation, k-fold out-of-fold probabilities, ten-crop.

The paper's visual settings are the defaults (:data:`PAPER_VISION_TRAINING`): SGD with momentum
0.95, the learning rate cut x0.1 at epochs 40 and 60, 100 epochs, class-weighted cross-entropy;
training images get the three augmentations, evaluation and out-of-fold predictions use ten-crop.

Examples:
    >>> from hf_memotion.data import load_memotion, make_demo_data
    >>> data = load_memotion(make_demo_data("/tmp/memotion_vision_doc", n_train=24, n_test=6))
    >>> result = train_vision_classifier(
    ...     data, "/tmp/memotion_vision_doc_run", architecture="test_resnet", problems=["motivational"],
    ...     training=ClassifierTrainingArguments(epochs=1, optimizer="sgd", learning_rate=0.01, batch_size=8),
    ...     n_splits=2, processor_kwargs={"crop_size": 64})
    >>> result.oof_probabilities["motivational"].shape
    (24, 2)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from hf_memotion.models.heads import resolve_problem_labels
from hf_memotion.models.vision import (
    MemotionImageProcessor,
    MemotionVisionConfig,
    MemotionVisionForImageClassification,
)
from hf_memotion.tasks import PROBLEM_NAMES
from hf_memotion.training.cross_validation import CrossValidator, FoldMonitor
from hf_memotion.training.folds import class_weights
from hf_memotion.training.runs import (
    ClassifierRunResult,
    as_splits,
    data_provenance,
    run_classifier,
)
from hf_memotion.training.trainer import PAPER_VISION_TRAINING, ClassifierTrainingArguments

__all__ = [
    "PAPER_VISION_TRAINING",
    "prepare_vision_dataset",
    "train_vision_classifier",
    "vision_model_factory",
]

logger = logging.getLogger(__name__)


def prepare_vision_dataset(
    dataset: datasets.Dataset,
    processor: MemotionImageProcessor,
    problems: Sequence[str],
    *,
    train: bool,
    ten_crop: bool = False,
) -> datasets.Dataset:
    """A view of a Memotion split that yields ``pixel_values`` (and ``labels``) on the fly.

    Images are decoded and transformed when a batch is read (``datasets.with_transform``), with the
    training augmentation when ``train``, else the evaluation transform (ten crops when ``ten_crop``).
    """
    with_labels = all(p in dataset.column_names for p in problems)
    view = dataset.cast_column("image", datasets.Image(decode=False))
    columns = ["image", *problems] if with_labels else ["image"]
    view = view.select_columns(columns)

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        pixels = processor(batch["image"], train=train, ten_crop=ten_crop)["pixel_values"]
        out: dict[str, Any] = {"pixel_values": list(pixels)}
        if with_labels:
            rows = list(zip(*(batch[p] for p in problems), strict=True))
            out["labels"] = [torch.tensor(r if len(problems) > 1 else r[0]) for r in rows]
        return out

    view.set_transform(transform)
    return view


def vision_model_factory(
    architecture: str,
    problems: Sequence[str],
    *,
    pretrained: bool = False,
    pretrained_cfg_overlay: dict | None = None,
    vise_backbone: str | None = None,
    **model_kwargs: Any,
) -> Any:
    """A ``model_init``: a fresh visual classifier, on pre-trained weights if asked.

    timm's weights with ``pretrained`` (or a local file through ``pretrained_cfg_overlay``), a VisE backbone's with
    ``vise_backbone``.
    """

    def model_init() -> MemotionVisionForImageClassification:
        if vise_backbone:
            return MemotionVisionForImageClassification.from_vise(
                vise_backbone, problems=list(problems), **model_kwargs
            )
        if pretrained or pretrained_cfg_overlay:
            return MemotionVisionForImageClassification.from_timm(
                architecture, pretrained_cfg_overlay=pretrained_cfg_overlay, problems=list(problems), **model_kwargs
            )
        config = MemotionVisionConfig(architecture=architecture, problems=list(problems), **model_kwargs)
        return MemotionVisionForImageClassification(config)

    return model_init


def _collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    batch = {"pixel_values": torch.stack([r["pixel_values"] for r in rows])}
    if "labels" in rows[0]:
        batch["labels"] = torch.stack([r["labels"] for r in rows])
    return batch


def train_vision_classifier(
    data: datasets.DatasetDict | datasets.Dataset,
    output_dir: str | os.PathLike,
    *,
    architecture: str = "test_resnet",
    problems: Sequence[str] = PROBLEM_NAMES,
    training: ClassifierTrainingArguments | None = None,
    n_splits: int = 5,
    seed: int = 0,
    weighted_loss: bool = True,
    pretrained: bool = False,
    pretrained_cfg_overlay: dict | None = None,
    vise_backbone: str | None = None,
    ten_crop: bool = True,
    processor_kwargs: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    refit: bool = True,
    keep_model: bool = True,
    test_time: str = "refit",
    card_data: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
    monitor: FoldMonitor | None = None,
) -> ClassifierRunResult:
    """Train one visual model (one problem, or several from one forward pass) the paper's way.

    Args:
        data: A ``DatasetDict`` from :func:`hf_memotion.data.load_memotion` (``train``, optional ``test``).
        output_dir: Run folder (layout in :mod:`hf_memotion.training.runs`); finished folds are reused.
        architecture: Any timm name, ``"polynet"`` included.
        problems: Problems to predict.
        training: Trainer settings (default: :data:`PAPER_VISION_TRAINING`).
        n_splits: Folds.
        seed: Seed of folds, early-stopping split and training.
        weighted_loss: Inverse-frequency class weights (the paper's loss).
        pretrained: Start from timm's pre-trained weights (downloads unless ``pretrained_cfg_overlay`` names a file).
        pretrained_cfg_overlay: timm's overlay, e.g. ``{"file": "weights.safetensors"}`` for a local checkpoint.
        vise_backbone: Start from a VisE backbone (folder or Hub id); its architecture replaces ``architecture``.
        ten_crop: Ten-crop for early stopping, out-of-fold and test predictions (the paper's inference).
        processor_kwargs: Overrides of the processor timm's data config gives (e.g. ``{"crop_size": 64}``).
        model_kwargs: :class:`MemotionVisionConfig` fields (``drop_rate``, ``model_args``).
        refit: Refit on all rows, save the model and score the test split.
        keep_model: Return the refit model in the result (``False``: freed once saved; see
            :func:`~hf_memotion.training.runs.run_classifier`).
        test_time: ``"refit"`` or ``"fold_average"``: which models' probabilities the test split gets (see
            :func:`~hf_memotion.training.runs.run_classifier`).
        card_data: More fields for the saved model's card and ``metrics.json`` (not part of the settings' key).
        budget: A pruned selection's short budget, ``{"folds": n}`` (with ``refit=False``; see
            :func:`~hf_memotion.training.runs.run_classifier`).
        monitor: Watches the folds and may prune the run (a pruned Optuna study's reporter).
    """
    splits = as_splits(data)
    training = dataclasses.replace(training or PAPER_VISION_TRAINING, seed=seed)
    problems = list(problems)
    problem_labels = resolve_problem_labels(problems)
    train = splits["train"]
    model_kwargs = dict(model_kwargs or {})
    if weighted_loss:
        model_kwargs["class_weights"] = {p: class_weights(train[p], len(problem_labels[p])).tolist() for p in problems}
    if vise_backbone:
        from hf_memotion.models.vise.configuration_vise import ViseConfig

        try:
            architecture = ViseConfig.from_pretrained(vise_backbone).architecture
        except OSError as err:
            raise FileNotFoundError(
                f"vise_backbone {vise_backbone}: not a VisE model folder or Hub id ({err})"
            ) from None
    processor = MemotionImageProcessor.from_timm(architecture, ten_crop=ten_crop, **(processor_kwargs or {}))
    test = splits.get("test")
    scored = test is not None and all(p in test.column_names for p in problems)
    settings = {
        "modality": "vision",
        "architecture": architecture,
        "problems": problems,
        "training": training.to_dict(),
        "model": model_kwargs,
        "processor": processor.to_dict(),
        "pretrained": bool(pretrained or pretrained_cfg_overlay),
        "vise_backbone": vise_backbone,
        "n_splits": n_splits,
        "n_rows": len(train),
        "ten_crop": ten_crop,
        "weighted_loss": weighted_loss,
        "data": data_provenance(train),
        **({"budget": dict(budget)} if budget else {}),
    }
    model_init = vision_model_factory(
        architecture,
        problems,
        pretrained=pretrained,
        pretrained_cfg_overlay=pretrained_cfg_overlay,
        vise_backbone=vise_backbone,
        **model_kwargs,
    )
    # eval_batch_size counts images through the network: a ten-crop meme is ten of them (a bounded forward)
    crops = 10 if ten_crop else 1
    fits = dataclasses.replace(training, eval_batch_size=max(1, training.eval_batch_size // crops))
    validator = CrossValidator(model_init, problem_labels, fits, n_splits=n_splits, seed=seed, data_collator=_collate)
    return run_classifier(
        validator,
        train_dataset=prepare_vision_dataset(train, processor, problems, train=True),
        eval_dataset=prepare_vision_dataset(train, processor, problems, train=False, ten_crop=ten_crop),
        output_dir=output_dir,
        settings=settings,
        preprocessor=processor,
        test_dataset=prepare_vision_dataset(test, processor, problems, train=False, ten_crop=ten_crop)
        if scored
        else None,
        test_labels={p: test[p] for p in problems} if scored else None,
        refit=refit,
        keep_model=keep_model,
        test_time=test_time,
        card_data=card_data,
        budget=budget,
        monitor=monitor,
        train_labels=np.stack([np.asarray(train[p]) for p in problems], axis=1),
    )
