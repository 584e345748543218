"""The joint family: an image and a text encoder fused into one member that reads the whole meme.

A ``family: multimodal`` entry of a config (:class:`MultimodalMemberSpec`) trains one
:class:`~hf_memotion.models.multimodal.MemotionMultimodalForClassification`: the same run as the unimodal members'
(:func:`~hf_memotion.training.runs.run_classifier`: folds, early stopping, refit, test scores, one folder layout),
so its out-of-fold probabilities stack beside theirs. Images get the visual member's augmentation for training and
its evaluation transform (ten crops when ``ten_crop``) otherwise; texts are tokenized as the textual member's are.
It has no search (it trains with its settings as given). As an ensemble member it reads both (a
:class:`~hf_memotion.families.inputs.TextInput` and an :class:`~hf_memotion.families.inputs.ImageInput`, each
shared with the unimodal members that preprocess alike); explanations give its Shapley share; the ONNX export does
not cover it yet.

Examples:
    >>> from hf_memotion.data import load_memotion, make_demo_data
    >>> from hf_memotion.families import MemberRun, parse_member, train_member
    >>> data = load_memotion(make_demo_data("/tmp/memotion_joint_doc", n_train=24, n_test=6))
    >>> spec = parse_member({"family": "multimodal", "problems": ["motivational"], "ten_crop": False,
    ...     "processor": {"crop_size": 32}, "training": {"epochs": 1, "learning_rate": 1e-3, "batch_size": 8},
    ...     "model": {"projection_dim": 4, "ffn_size": 8}, "tiny": {"hidden_size": 16, "num_layers": 1}})
    >>> result = train_member(data, "/tmp/memotion_joint_doc_run", spec, MemberRun(n_splits=2))
    >>> result.oof_probabilities["motivational"].shape
    (24, 2)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch

from hf_memotion.families.base import MemberRun, MemberSpec, ModelEntry, ModelFamily, register_family
from hf_memotion.families.inputs import ImageInput, MemberInput, TextInput
from hf_memotion.families.published import published_config, text_backbone_config
from hf_memotion.families.text import load_text_backbone
from hf_memotion.families.training import prepare_run
from hf_memotion.models.text.preprocessing import TextFeeding
from hf_memotion.training.runs import ClassifierRunResult, run_classifier

__all__ = ["MultimodalFamily", "MultimodalMemberSpec", "prepare_multimodal_dataset"]

logger = logging.getLogger(__name__)


@dataclass
class MultimodalMemberSpec(MemberSpec):
    """A joint image-text member (``family: multimodal``): the keys every member takes, and these.

    Attributes:
        architecture: The image encoder as a timm name (``"vit_base_patch16_clip_224"``, ``"test_resnet"``...).
        image_encoder: Instead, a transformers image tower by Hub id or folder (a CLIP/SigLIP dual encoder's image
            tower included), or ``"dual"``: the image tower of the dual encoder named by ``backbone``.
        backbone: The text encoder: ``"tiny:<family>"`` (``bert``, ``clip``, ``siglip``...) or a Hub id / folder (a
            dual encoder gives its text tower).
        tiny: Sizes of a tiny text encoder.
        processor: Overrides of the image processor (``crop_size``...).
        ten_crop: Ten-crop for early stopping, out-of-fold and test predictions.
        pretrained: Start a timm ``architecture`` from timm's pretrained weights.
        model: Fields of :class:`~hf_memotion.models.multimodal.MemotionMultimodalConfig` (``fusion``,
            ``projection_dim``, ``freeze_image_encoder``...).

    Examples:
        >>> from hf_memotion.families import parse_member
        >>> parse_member({"name": "joint", "family": "multimodal", "search": {"n_trials": 3}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_memotion.specs.SpecError: top level: model 'joint': a joint member trains with its settings as given; ...
    """

    family: str = "multimodal"
    architecture: str = "test_resnet"
    image_encoder: str | None = None
    backbone: str = "tiny:bert"
    tiny: dict[str, Any] | None = None
    processor: dict[str, Any] | None = None
    ten_crop: bool = True
    pretrained: bool = False

    def __post_init__(self) -> None:
        if self.search is not None:
            raise ValueError(f"model {self.name!r}: a joint member trains with its settings as given; it has no search")
        super().__post_init__()


def prepare_multimodal_dataset(
    dataset: datasets.Dataset,
    processor: Any,
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
    from hf_memotion.models.text.preprocessing import encode_texts

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


def _collator(tokenizer: Any, feeding: TextFeeding):
    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokens = [{k: r[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in r} for r in rows]
        batch = feeding.pad(tokenizer, tokens)
        batch["pixel_values"] = torch.stack([r["pixel_values"] for r in rows])
        if "labels" in rows[0]:
            batch["labels"] = torch.stack([r["labels"] for r in rows])
        return batch

    return collate


def _model_init(
    config_kwargs: Mapping[str, Any],
    *,
    image_source: str | None = None,
    text_source: str | None = None,
    timm_pretrained: bool = False,
):
    """A ``model_init``: a fresh joint classifier, on pre-trained encoders where sources are given."""
    from hf_memotion.models.multimodal import MemotionMultimodalConfig, MemotionMultimodalForClassification

    def model_init() -> MemotionMultimodalForClassification:
        model = MemotionMultimodalForClassification(MemotionMultimodalConfig(**config_kwargs))
        if image_source is None and text_source is None and not timm_pretrained:
            return model
        return model.load_pretrained_encoders(image_source, text_source, timm_pretrained=timm_pretrained)

    return model_init


def _image_encoder(spec: MultimodalMemberSpec, read_config: Any) -> tuple[Any, str | None]:
    """``(vision_config, source)``: a transformers image tower, or timm's ``architecture`` (no source).

    ``read_config(source)`` reads a tower's config (from the Hub or a folder; ``--plan`` reads published ones).
    """
    from hf_memotion.models.towers import is_dual_encoder, tower_config

    if spec.image_encoder is None:
        return {"model_type": "memotion_vision", "architecture": spec.architecture}, None
    dual = spec.image_encoder == "dual"
    source = spec.backbone if dual else spec.image_encoder
    config = read_config(source)
    if dual and not is_dual_encoder(config):
        raise ValueError(
            f"image_encoder: 'dual' takes the image tower of a dual encoder backbone; {spec.backbone!r} is not"
        )
    return tower_config(config, "vision"), source


def _hub_config(source: str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source)


@register_family
class MultimodalFamily(ModelFamily):
    """Joint image-text members: an image encoder (timm or a transformers tower) and a text encoder, fused."""

    name = "multimodal"
    label = "joint"
    model_types = ("memotion_multimodal",)
    spec_class = MultimodalMemberSpec
    reads = ("image", "text")
    onnx_refusal = "a joint member: the ONNX export does not cover it yet; serve this ensemble with the PyTorch backend"

    def train(self, data: Any, output_dir: str | os.PathLike, entry: ModelEntry, run: MemberRun) -> ClassifierRunResult:
        """k-fold out-of-fold probabilities, the refit, test scores and ``output_dir/model`` with its processor."""
        from hf_memotion.models.multimodal import (
            MemotionMultimodalConfig,
            MemotionMultimodalProcessor,
            image_processor_for,
        )
        from hf_memotion.training.cross_validation import CrossValidator

        spec: MultimodalMemberSpec = entry.spec
        prepared = prepare_run(data, entry, run)
        text_config, tokenizer, text_source = load_text_backbone(spec.backbone, prepared.train["text"], spec.tiny)
        vision_config, image_source = _image_encoder(spec, _hub_config)
        config_kwargs = {
            "vision_config": vision_config,
            "text_config": text_config,
            "problems": prepared.problems,
            **prepared.model_kwargs,
        }
        resolved = MemotionMultimodalConfig(**config_kwargs)  # checked now, before any fold trains
        feeding = TextFeeding.of_member(resolved)  # SigLIP's tower: every text padded to its length, as trained
        image_processor = image_processor_for(
            resolved.vision_config, image_source, ten_crop=spec.ten_crop, **(spec.processor or {})
        )
        processor = MemotionMultimodalProcessor(
            image_processor, tokenizer, max_length=feeding.max_length, pad_to=feeding.pad_to
        )
        prepared.settings.update(processor=image_processor.to_dict())
        if spec.image_encoder is not None:
            prepared.settings["architecture"] = None
        model_init = _model_init(
            config_kwargs,
            image_source=image_source,
            text_source=text_source,
            timm_pretrained=bool(spec.pretrained and spec.image_encoder is None),
        )
        crops = 10 if spec.ten_crop else 1
        training = prepared.training
        fits = dataclasses.replace(training, eval_batch_size=max(1, training.eval_batch_size // crops))
        validator = CrossValidator(
            model_init,
            prepared.problem_labels,
            fits,
            n_splits=run.n_splits,
            seed=run.seed,
            data_collator=_collator(tokenizer, feeding),
        )
        problems = prepared.problems

        def view(split: datasets.Dataset, train_view: bool) -> datasets.Dataset:
            return prepare_multimodal_dataset(
                split,
                processor,
                problems,
                feeding.max_length,
                train=train_view,
                ten_crop=spec.ten_crop and not train_view,
            )

        return run_classifier(
            validator,
            train_dataset=view(prepared.train, True),
            eval_dataset=view(prepared.train, False),
            output_dir=output_dir,
            settings=prepared.settings,
            preprocessor=processor,
            test_dataset=view(prepared.test, False) if prepared.scored else None,
            test_labels=prepared.test_labels,
            train_labels=prepared.train_labels(),
            run=prepared.options(self.card_facts(spec)),
            load_model=lambda folder: self.load(str(folder))[0],
        )

    def load(self, folder: str, **options: Any) -> tuple[torch.nn.Module, Any]:
        """The saved model (its Auto class) and its processor (image processor and tokenizer)."""
        from transformers import AutoModelForSequenceClassification

        # transformers has no image-and-text classification Auto class: a joint model is found where text ones are
        return AutoModelForSequenceClassification.from_pretrained(folder, **options), self.load_preprocessor(folder)

    def load_preprocessor(self, folder: str) -> Any:
        """The saved processor (image processor and tokenizer)."""
        from hf_memotion.models.multimodal import MemotionMultimodalProcessor

        return MemotionMultimodalProcessor.from_pretrained(folder)

    def inputs(self, preprocessor: Any, text: TextFeeding | None) -> list[MemberInput]:
        """What it reads from a meme."""
        if text is None:
            raise ValueError("a joint member reads text: give its TextFeeding (TextFeeding.of_member(config))")
        return [TextInput(preprocessor.tokenizer, text), ImageInput(preprocessor.image_processor)]

    def planned_model(self, entry: ModelEntry, notes: list[str]) -> tuple[torch.nn.Module, dict, int]:
        """The network at its configured size, for ``--plan`` (fake tensors)."""
        from hf_memotion.models.multimodal import (
            MemotionMultimodalConfig,
            MemotionMultimodalForClassification,
            image_processor_for,
        )

        spec: MultimodalMemberSpec = entry.spec
        vision, _ = _image_encoder(spec, lambda source: published_config(source, notes, "image encoder"))
        text = text_backbone_config(spec.backbone, spec.tiny, notes)
        fields = {k: v for k, v in spec.model.items() if k != "class_weights"}
        config = MemotionMultimodalConfig(
            vision_config=vision, text_config=text, problems=list(entry.problems), **fields
        )
        size = image_processor_for(config.vision_config, **(spec.processor or {})).crop_size
        model = MemotionMultimodalForClassification(config)
        feeding = TextFeeding.of_member(config)  # a SigLIP tower reads its full length
        tokens = torch.ones(2, feeding.pad_to or feeding.max_length, dtype=torch.long)
        inputs = {"pixel_values": torch.zeros(2, 3, size, size), "input_ids": tokens, "attention_mask": tokens}
        return model, inputs, 10 if spec.ten_crop else 1

    def network(self, spec: MultimodalMemberSpec) -> str:
        """What plans and cards name as its network."""
        image = spec.architecture if spec.image_encoder is None else spec.image_encoder
        return f"{spec.backbone} (text + image)" if spec.image_encoder == "dual" else f"{image} + {spec.backbone}"

    def card_facts(self, spec: MultimodalMemberSpec) -> dict[str, Any]:
        """Where its weights came from, for its card."""
        hubs = [s for s in (spec.image_encoder, spec.backbone) if s and s != "dual" and not s.startswith("tiny:")]
        hubs = [s for s in hubs if not os.path.exists(s)]
        return {
            "pipeline_tag": "image-classification",
            "network": self.network(spec),
            "base_model": hubs[0] if hubs else None,
            "pretrained": ", ".join(hubs) or "none: random initialisation",
        }
