"""The visual family: any timm network with one head per problem, trained the paper's way, ten-crop at inference.

A ``family: vision`` entry of a config (:class:`VisionMemberSpec`) trains one
:class:`~hf_memotion.models.vision.MemotionVisionForImageClassification` per group of problems. The paper's visual
settings are its defaults (:class:`~hf_memotion.training.arguments.VisionTrainingArguments`: SGD with momentum
0.95, the learning rate cut x0.1 at epochs 40 and 60, 100 epochs, class-weighted cross-entropy); training images get
the three augmentations, evaluation and out-of-fold predictions use ten-crop. Its ``search:`` is the paper's
learning-rate grid (:class:`~hf_memotion.families.search.GridSpec`). As an ensemble member it reads the meme's
image (an :class:`~hf_memotion.families.inputs.ImageInput`), runs channels-last in chunks of images on a CPU,
exports to ONNX and gets Grad-CAM heat maps in explanations.

Examples:
    >>> from hf_memotion.data import load_memotion, make_demo_data
    >>> from hf_memotion.families import MemberRun, parse_member, train_member
    >>> data = load_memotion(make_demo_data("/tmp/memotion_vision_doc", n_train=24, n_test=6))
    >>> spec = parse_member({"family": "vision", "problems": ["motivational"], "processor": {"crop_size": 64},
    ...                      "training": {"epochs": 1, "learning_rate": 0.01, "batch_size": 8}})
    >>> result = train_member(data, "/tmp/memotion_vision_doc_run", spec, MemberRun(n_splits=2))
    >>> result.oof_probabilities["motivational"].shape
    (24, 2)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import datasets
import torch

from hf_memotion.families.base import MemberRun, MemberSpec, ModelEntry, ModelFamily, register_family
from hf_memotion.families.inputs import ImageInput, MemberInput
from hf_memotion.families.search import GridSpec
from hf_memotion.families.training import prepare_run
from hf_memotion.training.arguments import VisionTrainingArguments
from hf_memotion.training.runs import ClassifierRunResult, run_classifier

if TYPE_CHECKING:
    from hf_memotion.models.text.preprocessing import TextFeeding

__all__ = ["VisionFamily", "VisionMemberSpec", "prepare_vision_dataset"]

logger = logging.getLogger(__name__)


@dataclass
class VisionMemberSpec(MemberSpec):
    """A visual member (``family: vision``): :class:`~hf_memotion.families.base.MemberSpec`'s keys and these.

    Attributes:
        architecture: Any timm name (``"polynet"``, CLIP and SigLIP towers such as
            ``"vit_large_patch14_clip_224.openai"`` included).
        training: Over the paper's visual settings
            (:class:`~hf_memotion.training.arguments.VisionTrainingArguments`).
        search: The learning-rate grid (:class:`~hf_memotion.families.search.GridSpec`), each rate cross-validated.
        processor: Overrides of the image processor timm's data config gives (``crop_size``...).
        ten_crop: Ten-crop for early stopping, out-of-fold and test predictions (the paper's inference).
        pretrained: Start from timm's pretrained weights (downloads unless ``pretrained_file`` names a file).
        pretrained_file: A local weight file for timm (``pretrained_cfg_overlay={"file": ...}``).
        vise_backbone: Start from a VisE backbone (folder or Hub id); its architecture replaces ``architecture``.
        model: Fields of :class:`~hf_memotion.models.vision.MemotionVisionConfig` (``drop_rate``, ``model_args``).

    Examples:
        >>> from hf_memotion.families import parse_member
        >>> spec = parse_member({"family": "vision", "search": {"learning_rate": [0.01, 0.02]}})
        >>> spec.training.epochs, spec.search.learning_rate
        (100, [0.01, 0.02])
    """

    family: str = "vision"
    architecture: str = "test_resnet"
    training: VisionTrainingArguments = field(default_factory=VisionTrainingArguments)
    search: GridSpec | None = None
    processor: dict[str, Any] | None = None
    ten_crop: bool = True
    pretrained: bool = False
    pretrained_file: str | None = None
    vise_backbone: str | None = None

    def timm_overlay(self) -> dict[str, str] | None:
        """Timm's ``pretrained_cfg_overlay`` for ``pretrained_file``."""
        return {"file": str(self.pretrained_file)} if self.pretrained_file else None


def prepare_vision_dataset(
    dataset: datasets.Dataset,
    processor: Any,
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


def _model_init(spec: VisionMemberSpec, architecture: str, problems: Sequence[str], **model_kwargs: Any):
    """A ``model_init``: a fresh visual classifier, on timm's or a VisE backbone's weights if asked."""
    from hf_memotion.models.vision import MemotionVisionConfig, MemotionVisionForImageClassification

    overlay = spec.timm_overlay()

    def model_init() -> MemotionVisionForImageClassification:
        if spec.vise_backbone:
            return MemotionVisionForImageClassification.from_vise(
                spec.vise_backbone, problems=list(problems), **model_kwargs
            )
        if spec.pretrained or overlay:
            return MemotionVisionForImageClassification.from_timm(
                architecture, pretrained_cfg_overlay=overlay, problems=list(problems), **model_kwargs
            )
        return MemotionVisionForImageClassification(
            MemotionVisionConfig(architecture=architecture, problems=list(problems), **model_kwargs)
        )

    return model_init


def _collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    batch = {"pixel_values": torch.stack([r["pixel_values"] for r in rows])}
    if "labels" in rows[0]:
        batch["labels"] = torch.stack([r["labels"] for r in rows])
    return batch


def _architecture(spec: VisionMemberSpec) -> str:
    """The timm network: the spec's, or the one of the VisE backbone it starts from."""
    if not spec.vise_backbone:
        return spec.architecture
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(spec.vise_backbone).architecture
    except (OSError, AttributeError) as err:
        raise FileNotFoundError(
            f"vise_backbone {spec.vise_backbone}: not a VisE model folder or Hub id ({err})"
        ) from None


@register_family
class VisionFamily(ModelFamily):
    """The paper's visual models (Table 4): any timm network, class-weighted loss, ten-crop inference."""

    name = "vision"
    label = "vision"
    model_types = ("memotion_vision",)
    spec_class = VisionMemberSpec
    reads = ("image",)
    explains = True
    onnx_refusal = None

    def train(self, data: Any, output_dir: str | os.PathLike, entry: ModelEntry, run: MemberRun) -> ClassifierRunResult:
        """k-fold out-of-fold probabilities (ten-crop), the refit, test scores and ``output_dir/model``."""
        from hf_memotion.models.vision import MemotionImageProcessor
        from hf_memotion.training.cross_validation import CrossValidator

        spec: VisionMemberSpec = entry.spec
        prepared = prepare_run(data, entry, run)
        architecture = _architecture(spec)
        processor = MemotionImageProcessor.from_timm(architecture, ten_crop=spec.ten_crop, **(spec.processor or {}))
        prepared.settings.update(architecture=architecture, processor=processor.to_dict())
        model_init = _model_init(spec, architecture, prepared.problems, **prepared.model_kwargs)
        # eval_batch_size counts images through the network: a ten-crop meme is ten of them (a bounded forward)
        crops = 10 if spec.ten_crop else 1
        training = prepared.training
        fits = dataclasses.replace(training, eval_batch_size=max(1, training.eval_batch_size // crops))
        validator = CrossValidator(
            model_init, prepared.problem_labels, fits, n_splits=run.n_splits, seed=run.seed, data_collator=_collate
        )
        problems = prepared.problems

        def view(split: datasets.Dataset, train: bool) -> datasets.Dataset:
            return prepare_vision_dataset(split, processor, problems, train=train, ten_crop=spec.ten_crop and not train)

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
        """The saved model (its Auto class) and its image processor."""
        from transformers import AutoModelForImageClassification

        options.pop("attn_implementation", None)  # convolutional networks have no attention to choose
        return AutoModelForImageClassification.from_pretrained(folder, **options), self.load_preprocessor(folder)

    def load_preprocessor(self, folder: str) -> Any:
        """The saved image processor (always a :class:`MemotionImageProcessor`, whatever class the file names)."""
        from hf_memotion.models.vision import MemotionImageProcessor

        return MemotionImageProcessor.from_pretrained(folder)

    def inputs(self, preprocessor: Any, text: TextFeeding | None) -> list[MemberInput]:
        """What it reads from a meme."""
        return [ImageInput(preprocessor)]

    def optimize_for_inference(
        self, model: torch.nn.Module, *, channels_last: bool, images_per_forward: Any, quantize_text: bool
    ) -> None:
        """Channels-last weights and inputs, and a batch's crops in network calls of ``images_per_forward``."""
        if hasattr(model, "to_channels_last"):
            if channels_last:
                model.to_channels_last()
            model.set_inference_chunk_size(images_per_forward)

    @contextlib.contextmanager
    def exportable(self, model: torch.nn.Module) -> Iterator[None]:
        """One network call per batch while tracing (chunking is a loop the graph would unroll), restored after."""
        saved = getattr(model, "inference_chunk_size", None)
        if hasattr(model, "set_inference_chunk_size"):
            model.set_inference_chunk_size(None)
        try:
            yield
        finally:
            if hasattr(model, "set_inference_chunk_size"):
                model.set_inference_chunk_size(saved)

    def planned_model(self, entry: ModelEntry, notes: list[str]) -> tuple[torch.nn.Module, dict, int]:
        """The network at its configured size, for ``--plan`` (fake tensors)."""
        from hf_memotion.models.vision import (
            MemotionImageProcessor,
            MemotionVisionConfig,
            MemotionVisionForImageClassification,
        )

        spec: VisionMemberSpec = entry.spec
        architecture = _architecture(spec)
        size = MemotionImageProcessor.from_timm(architecture, **(spec.processor or {})).crop_size
        fields = {k: v for k, v in spec.model.items() if k != "class_weights"}
        model = MemotionVisionForImageClassification(
            MemotionVisionConfig(architecture=architecture, problems=list(entry.problems), **fields)
        )
        return model, {"pixel_values": torch.zeros(2, 3, size, size)}, 10 if spec.ten_crop else 1

    def network(self, spec: VisionMemberSpec) -> str:
        """What plans and cards name as its network."""
        return spec.architecture

    def card_facts(self, spec: VisionMemberSpec) -> dict[str, Any]:
        """Where its weights came from, for its card."""
        hub = None
        if spec.vise_backbone:  # a VisE backbone: its Hub id, or nothing for a local folder
            hub = None if os.path.exists(str(spec.vise_backbone)) else str(spec.vise_backbone)
            pretrained = f"the VisE backbone at {spec.vise_backbone}"
        elif spec.pretrained_file:
            pretrained = "a local checkpoint"
        elif spec.pretrained:
            hub = _timm_hub_id(spec.architecture)
            pretrained = hub or "timm pretrained weights"
        else:
            pretrained = "none: random initialisation"
        return {
            "pipeline_tag": self.pipeline_tag,
            "network": spec.architecture,
            "base_model": hub,
            "pretrained": pretrained,
        }


def _timm_hub_id(architecture: str) -> str | None:
    """The Hub id timm takes ``architecture``'s pretrained weights from, when it has one."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(architecture)
    except (RuntimeError, ValueError):
        return None
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None
