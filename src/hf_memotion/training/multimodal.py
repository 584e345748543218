"""Train a joint image-text member on Memotion data: both encoders, k-fold out-of-fold probabilities, refit, save.

The same run as the unimodal members' (:func:`~hf_memotion.training.runs.run_classifier`: folds, early stopping,
refit, test scores, one folder layout), so its out-of-fold probabilities stack beside theirs. Images get the visual
member's augmentation for training and its evaluation transform (ten crops when ``ten_crop``) otherwise; texts are
tokenized as the textual member's are.

Examples:
    >>> from hf_memotion.data import load_memotion, make_demo_data
    >>> data = load_memotion(make_demo_data("/tmp/memotion_joint_doc", n_train=24, n_test=6))
    >>> result = train_multimodal_classifier(
    ...     data, "/tmp/memotion_joint_doc_run", architecture="test_resnet", backbone="tiny:bert",
    ...     problems=["motivational"], n_splits=2, ten_crop=False, processor_kwargs={"crop_size": 32},
    ...     training=ClassifierTrainingArguments(epochs=1, learning_rate=1e-3, batch_size=8),
    ...     model_kwargs={"projection_dim": 4, "ffn_size": 8}, tiny_kwargs={"hidden_size": 16, "num_layers": 1})
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
from hf_memotion.models.multimodal import (
    MemotionMultimodalConfig,
    MemotionMultimodalForClassification,
    MemotionMultimodalProcessor,
    image_processor_for,
)
from hf_memotion.models.text.preprocessing import encode_texts
from hf_memotion.models.towers import is_dual_encoder, tower_config
from hf_memotion.tasks import PROBLEM_NAMES
from hf_memotion.training.cross_validation import CrossValidator, FoldMonitor
from hf_memotion.training.folds import class_weights
from hf_memotion.training.runs import ClassifierRunResult, as_splits, data_provenance, run_classifier
from hf_memotion.training.text import load_text_backbone
from hf_memotion.training.trainer import ClassifierTrainingArguments

__all__ = ["multimodal_model_factory", "prepare_multimodal_dataset", "train_multimodal_classifier"]

logger = logging.getLogger(__name__)


def prepare_multimodal_dataset(
    dataset: datasets.Dataset,
    processor: MemotionMultimodalProcessor,
    problems: Sequence[str],
    max_length: int,
    *,
    train: bool,
    ten_crop: bool = False,
) -> datasets.Dataset:
    """A view of a Memotion split yielding ``pixel_values``, ``input_ids``, ``attention_mask`` (and ``labels``).

    Both are made when a batch is read: the images decoded and transformed (the augmentation when ``train``), the
    texts tokenized (unpadded: the collator pads each batch).
    """
    with_labels = all(p in dataset.column_names for p in problems)
    view = dataset.cast_column("image", datasets.Image(decode=False))
    view = view.select_columns(["image", "text", *problems] if with_labels else ["image", "text"])

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        pixels = processor.image_processor(batch["image"], train=train, ten_crop=ten_crop)["pixel_values"]
        tokens = encode_texts(processor.tokenizer, batch["text"], max_length)
        out: dict[str, Any] = {"pixel_values": list(pixels), **tokens}
        if with_labels:
            rows = list(zip(*(batch[p] for p in problems), strict=True))
            out["labels"] = [torch.tensor(r if len(problems) > 1 else r[0]) for r in rows]
        return out

    view.set_transform(transform)
    return view


def _collator(tokenizer: Any):
    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokens = [{k: r[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in r} for r in rows]
        batch = dict(tokenizer.pad(tokens, padding_side="right", return_tensors="pt"))
        batch["pixel_values"] = torch.stack([r["pixel_values"] for r in rows])
        if "labels" in rows[0]:
            batch["labels"] = torch.stack([r["labels"] for r in rows])
        return batch

    return collate


def multimodal_model_factory(
    config_kwargs: Mapping[str, Any],
    *,
    image_source: str | None = None,
    text_source: str | None = None,
    timm_pretrained: bool = False,
) -> Any:
    """A ``model_init``: a fresh joint classifier, on pre-trained encoders where sources are given."""

    def model_init() -> MemotionMultimodalForClassification:
        model = MemotionMultimodalForClassification(MemotionMultimodalConfig(**config_kwargs))
        if image_source is None and text_source is None and not timm_pretrained:
            return model
        return model.load_pretrained_encoders(image_source, text_source, timm_pretrained=timm_pretrained)

    return model_init


def _image_encoder(architecture: str, image_encoder: str | None, backbone: str) -> tuple[Any, str | None]:
    """``(vision_config, source)``: a transformers image tower, or timm's ``architecture`` (no source).

    ``image_encoder`` names the tower (a Hub id or folder); ``"dual"`` takes the image tower of the dual encoder that
    ``backbone`` names.
    """
    if image_encoder is None:
        return {"model_type": "memotion_vision", "architecture": architecture}, None
    from transformers import AutoConfig

    source = backbone if image_encoder == "dual" else image_encoder
    config = AutoConfig.from_pretrained(source)
    if image_encoder == "dual" and not is_dual_encoder(config):
        raise ValueError(f"image_encoder: 'dual' takes the image tower of a dual encoder backbone; {backbone!r} is not")
    return tower_config(config, "vision"), source


def train_multimodal_classifier(
    data: datasets.DatasetDict | datasets.Dataset,
    output_dir: str | os.PathLike,
    *,
    architecture: str = "test_resnet",
    image_encoder: str | None = None,
    backbone: str = "tiny:bert",
    problems: Sequence[str] = PROBLEM_NAMES,
    training: ClassifierTrainingArguments | None = None,
    n_splits: int = 5,
    seed: int = 0,
    weighted_loss: bool = True,
    pretrained: bool = False,
    ten_crop: bool = True,
    processor_kwargs: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    tiny_kwargs: dict[str, Any] | None = None,
    refit: bool = True,
    keep_model: bool = True,
    test_time: str = "refit",
    card_data: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
    monitor: FoldMonitor | None = None,
) -> ClassifierRunResult:
    """Train one joint image-text model (one problem, or several from one forward pass).

    Args:
        data: A ``DatasetDict`` from :func:`hf_memotion.data.load_memotion` (``train``, optional ``test``).
        output_dir: Run folder (layout in :mod:`hf_memotion.training.runs`); finished folds are reused.
        architecture: The image encoder as a timm name (``"vit_base_patch16_clip_224"``, ``"test_resnet"``...).
        image_encoder: Instead, a transformers image tower by Hub id or folder (a CLIP/SigLIP dual encoder's image
            tower included), or ``"dual"``: the image tower of the dual encoder named by ``backbone``.
        backbone: The text encoder: ``"tiny:<family>"`` (``bert``, ``clip``, ``siglip``...) or a Hub id / folder (a
            dual encoder gives its text tower).
        problems: Problems to predict.
        training: Trainer settings (default: the textual member's).
        n_splits: Folds.
        seed: Seed of folds, early-stopping split and training.
        weighted_loss: Inverse-frequency class weights (the paper's loss).
        pretrained: Start a timm ``architecture`` from timm's pre-trained weights.
        ten_crop: Ten-crop for early stopping, out-of-fold and test predictions.
        processor_kwargs: Overrides of the image processor (``crop_size``...).
        model_kwargs: :class:`MemotionMultimodalConfig` fields (``fusion``, ``projection_dim``,
            ``freeze_image_encoder``...).
        tiny_kwargs: Sizes of a tiny text encoder.
        refit: Refit on all rows, save the model and score the test split.
        keep_model: Return the refit model in the result (``False``: freed once saved).
        test_time: ``"refit"`` or ``"fold_average"``: which models' probabilities the test split gets.
        card_data: More fields for the saved model's card and ``metrics.json``.
        budget: A pruned selection's short budget, ``{"folds": n}`` (with ``refit=False``).
        monitor: Watches the folds and may prune the run.
    """
    splits = as_splits(data)
    training = dataclasses.replace(training or ClassifierTrainingArguments(), seed=seed)
    problems = list(problems)
    problem_labels = resolve_problem_labels(problems)
    train = splits["train"]
    model_kwargs = dict(model_kwargs or {})
    text_config, tokenizer, text_source = load_text_backbone(backbone, train["text"], tiny_kwargs)
    vision_config, image_source = _image_encoder(architecture, image_encoder, backbone)
    if weighted_loss:
        model_kwargs["class_weights"] = {p: class_weights(train[p], len(problem_labels[p])).tolist() for p in problems}
    config_kwargs = {"vision_config": vision_config, "text_config": text_config, "problems": problems, **model_kwargs}
    resolved = MemotionMultimodalConfig(**config_kwargs)  # checked now, before any fold trains
    max_length = int(resolved.max_length)
    image_processor = image_processor_for(
        resolved.vision_config, image_source, ten_crop=ten_crop, **(processor_kwargs or {})
    )
    processor = MemotionMultimodalProcessor(image_processor, tokenizer)
    test = splits.get("test")
    scored = test is not None and all(p in test.column_names for p in problems)
    settings = {
        "modality": "multimodal",
        "architecture": architecture if image_encoder is None else None,
        "image_encoder": image_encoder,
        "backbone": backbone,
        "problems": problems,
        "training": training.to_dict(),
        "model": model_kwargs,
        "tiny": tiny_kwargs,
        "processor": image_processor.to_dict(),
        "pretrained": bool(pretrained),
        "n_splits": n_splits,
        "n_rows": len(train),
        "ten_crop": ten_crop,
        "weighted_loss": weighted_loss,
        "data": data_provenance(train),
        **({"budget": dict(budget)} if budget else {}),
    }
    model_init = multimodal_model_factory(
        config_kwargs,
        image_source=image_source,
        text_source=text_source,
        timm_pretrained=bool(pretrained and image_encoder is None),
    )
    crops = 10 if ten_crop else 1
    fits = dataclasses.replace(training, eval_batch_size=max(1, training.eval_batch_size // crops))
    validator = CrossValidator(
        model_init, problem_labels, fits, n_splits=n_splits, seed=seed, data_collator=_collator(tokenizer)
    )

    def view(split: datasets.Dataset, train_view: bool) -> datasets.Dataset:
        return prepare_multimodal_dataset(
            split, processor, problems, max_length, train=train_view, ten_crop=ten_crop and not train_view
        )

    return run_classifier(
        validator,
        train_dataset=view(train, True),
        eval_dataset=view(train, False),
        output_dir=output_dir,
        settings=settings,
        preprocessor=processor,
        test_dataset=view(test, False) if scored else None,
        test_labels={p: test[p] for p in problems} if scored else None,
        refit=refit,
        keep_model=keep_model,
        test_time=test_time,
        card_data=card_data,
        budget=budget,
        monitor=monitor,
        train_labels=np.stack([np.asarray(train[p]) for p in problems], axis=1),
    )
