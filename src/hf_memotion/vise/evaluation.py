"""The VisE downstream protocols (Section 4.1 and Appendix C.3 of the VisE paper): linear evaluation and fine-tuning.

For each backbone, task and protocol, a grid of base learning rates {0.025, 0.0025, 0.00025} x weight
decays {0.01, 0.001, 0.0001} is trained, with learning rate ``base / 256 x batch``; the point with the
best validation score is reported on the test split. The sensitivities are as in Appendix C.3:
``S_lr`` is the standard deviation (population, ``ddof=0``) of the validation score across the learning
rates at the best weight decay, ``S_wd`` across the weight decays at the best learning rate; scores are
accuracy in percent, or ROC AUC as a fraction, as in the paper's tables. Tasks with several random
splits (UnbiasedEmotion) run the grid on each and report mean and standard deviation.

- **linear**: the backbone is frozen and a linear classifier is trained on its pooled features, with
  ``linear_features="augmented"`` (Appendix C.3: the pretraining augmentation, random resized crop and flip,
  drawn anew every epoch; the frozen backbone runs once per batch for all grid points together) or
  ``"cached"`` (resize + centre crop, computed once per split: the fast option). Validation and test features
  are centre crops either way. A linear layer over features is a few lines of torch: a ``Trainer`` per grid
  point would run the frozen backbone again for every point.
- **finetune**: :class:`~hf_memotion.models.vise.modeling_vise.ViseForImageClassification` initialised from the
  backbone, trained end to end with ``Trainer`` and the pretraining augmentation.

Optimisers as the paper: SGD with momentum 0.9 for image-only models, Adam with decoupled weight decay (AdamW)
for multi-modal ones, in both protocols. Multi-modal tasks (Hateful Memes) run in the paper's three settings
(:data:`SETTINGS`): ``image_text_frozen`` (a frozen text encoder's sentence embedding, the attention-masked mean of
its last hidden states, concatenated to the image features: linear and fine-tuned), ``image_text_finetuned``
(both encoders trained together: fine-tuned only) and ``image_only`` (linear and fine-tuned). Schedules decay at
epochs (``lr_epochs``: the paper's tables) or fractions of training (``lr_steps``). Each grid point's result is
saved as it finishes (``runs/.../*.json``): an interrupted evaluation started again skips the finished points.

Examples:
    >>> sensitivity({(0.025, 0.01): 80.0, (0.0025, 0.01): 70.0, (0.025, 0.001): 60.0, (0.0025, 0.001): 50.0})
    {'best': [0.025, 0.01], 's_lr': 5.0, 's_wd': 10.0}
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from sklearn.metrics import accuracy_score, roc_auc_score
from torch import nn
from tqdm.auto import tqdm
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_memotion.data.downstream import DownstreamTask
from hf_memotion.hardware import resolve_device
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.models.timm_backbone import pooled_width
from hf_memotion.models.vise.baselines import BASELINE_KINDS, load_baseline
from hf_memotion.models.vise.configuration_vise import ViseConfig
from hf_memotion.models.vise.modeling_vise import ViseForImageClassification, ViseModel
from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor
from hf_memotion.specs import parse_spec
from hf_memotion.training.arguments import (
    MemotionTrainingArguments,
    TakesTrainingArguments,
    build_training_arguments,
    show_progress,
)
from hf_memotion.training.schedules import StepSchedule, milestone_steps
from hf_memotion.training.trainer import MemotionTrainer
from hf_memotion.vise.text_encoder import TextEncoder, sentence_embedding

__all__ = [
    "LINEAR_FEATURES",
    "PROTOCOLS",
    "SETTINGS",
    "SETTING_PROTOCOLS",
    "Backbone",
    "ImageTextClassifier",
    "ProtocolArguments",
    "evaluate_backbone",
    "load_backbone",
    "score",
    "sensitivity",
]

logger = logging.getLogger(__name__)

PROTOCOLS = ("linear", "finetune")
#: How a multi-modal task is evaluated (the VisE paper's Section 5.2): image + frozen text (Table 12), image + text
#: both fine-tuned (Table 14), image only (Tables 15 and 16). An image-only task has only ``image_only``.
SETTINGS = ("image_text_frozen", "image_text_finetuned", "image_only")
#: The protocols of each setting, as the paper runs them.
SETTING_PROTOCOLS = {"image_text_frozen": PROTOCOLS, "image_text_finetuned": ("finetune",), "image_only": PROTOCOLS}
#: Training features of the linear probe: the pretraining augmentation each epoch (the paper) or cached centre crops.
LINEAR_FEATURES = ("augmented", "cached")


@dataclass
class ProtocolArguments(TakesTrainingArguments):
    """Settings of one protocol's grid (the paper's grid by default).

    Attributes:
        base_learning_rates: Base LRs; the rate is ``base / 256 x batch_size``.
        weight_decays: Weight decays.
        batch_size: Training batch.
        epochs: Training epochs per grid point.
        lr_steps: Fractions of training at which the rate is multiplied by ``lr_decay`` (used when ``lr_epochs``
            is not given).
        lr_epochs: Epochs from which the rate is multiplied by ``lr_decay`` once more, as the paper's tables give
            them (Hateful Memes: 30 epochs, x0.5 from epoch 20 -> ``[20]``: epochs 0-19 at the full rate; Politics:
            ``[10, 20]`` x0.1; CUB: 300 epochs, ``[100, 200]`` x0.1).
        lr_decay: The factor at each step.
        momentum: SGD momentum.
        optimizer: ``"auto"`` (SGD for image-only models, AdamW for multi-modal ones, as the paper), ``"sgd"``,
            ``"adamw"``.
        image_size: Input side (default: the backbone's image processor's).
        eval_batch_size: Batch of feature extraction and prediction.
        seed: Seed of initialisation, batches and augmentation.
        extra: Stock ``TrainingArguments`` fields for fine-tuning (``bf16``, ``dataloader_num_workers``, ...).

    Examples:
        >>> settings = ProtocolArguments(batch_size=128, epochs=300, lr_epochs=[100, 200], lr_decay=0.1)  # CUB
        >>> settings.learning_rate(0.025), [round(settings.epoch_schedule()(e), 3) for e in (99, 100, 199, 200)]
        (0.0125, [1.0, 0.1, 0.1, 0.01])
    """

    base_learning_rates: Sequence[float] = (0.025, 0.0025, 0.00025)
    weight_decays: Sequence[float] = (0.01, 0.001, 0.0001)
    batch_size: int = 64
    epochs: int = 30
    lr_steps: Sequence[float] = (0.667,)
    lr_epochs: Sequence[int] | None = None
    lr_decay: float = 0.5
    momentum: float = 0.9
    optimizer: str = "auto"
    image_size: int | None = None
    eval_batch_size: int = 64
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.optimizer not in ("auto", "sgd", "adamw"):
            raise ValueError(f"optimizer must be 'auto', 'sgd' or 'adamw', got {self.optimizer!r}")
        if not self.base_learning_rates or not self.weight_decays:
            raise ValueError("the grid needs at least one base learning rate and one weight decay")
        self.base_learning_rates = [float(x) for x in self.base_learning_rates]
        self.weight_decays = [float(x) for x in self.weight_decays]
        self.lr_steps = [float(x) for x in self.lr_steps]
        if self.lr_epochs is not None:
            self.lr_epochs = [int(x) for x in self.lr_epochs]
            if any(not 0 < e < self.epochs for e in self.lr_epochs):
                raise ValueError(f"lr_epochs {self.lr_epochs} must lie inside the {self.epochs} epochs")

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any] | None, *, source: str | None = None, section: str = "protocol"
    ) -> ProtocolArguments:
        """Build from a config section, naming an unknown key and the nearest valid one."""
        return parse_spec(cls, values, source=source, section=section)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a config section (stock fields beside the others, as a config gives them)."""
        values = {k: v for k, v in asdict(self).items() if k != "extra"}
        return {**values, **self.extra}

    def learning_rate(self, base: float) -> float:
        """``base / 256 x batch_size``."""
        return base / 256 * self.batch_size

    def epoch_schedule(self) -> StepSchedule:
        """The step decay over epochs (the linear probe's loop; fine-tuning applies it per step)."""
        milestones = self.lr_epochs if self.lr_epochs is not None else milestone_steps(self.lr_steps, self.epochs)
        return StepSchedule(total_steps=self.epochs, milestones=milestones, factor=self.lr_decay)

    def to_training_arguments(
        self,
        output_dir: str | os.PathLike,
        *,
        learning_rate: float,
        weight_decay: float,
        adamw: bool,
        use_cpu: bool | None = None,
    ) -> MemotionTrainingArguments:
        """The arguments of one fine-tuning grid point.

        SGD (or AdamW), the step decay, weight decay on every parameter, no clipping, no checkpoints or evaluation
        during training.

        Args:
            output_dir: The grid point's working folder.
            learning_rate: The point's rate (:meth:`learning_rate` of its base rate).
            weight_decay: The point's weight decay.
            adamw: AdamW rather than SGD (:meth:`uses_adamw`).
            use_cpu: Train on the CPU on a GPU machine (the run's ``device: cpu``; default: the GPU where there is
                one).

        Examples:
            >>> args = ProtocolArguments(epochs=30, lr_epochs=[20]).to_training_arguments(
            ...     "/tmp/hf_memotion_doc_protocol", learning_rate=0.01, weight_decay=1e-4, adamw=False, use_cpu=True)
            >>> args.optim.value, args.lr_milestones, args.lr_milestone_unit, args.use_cpu
            ('sgd', [20.0], 'epoch', True)
        """
        by_epoch = self.lr_epochs is not None
        return build_training_arguments(
            output_dir,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            use_cpu=use_cpu,
            num_train_epochs=self.epochs,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            optim="adamw_torch" if adamw else "sgd",
            momentum=self.momentum,
            decay_all_parameters=True,
            lr_milestones=list(self.lr_epochs if by_epoch else self.lr_steps),
            lr_milestone_unit="epoch" if by_epoch else "fraction",
            lr_decay=self.lr_decay,
            max_grad_norm=0.0,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            seed=self.seed,
            data_seed=self.seed,
            disable_tqdm=True,
            remove_unused_columns=False,
            stock=self.extra,
        )

    def uses_adamw(self, multimodal: bool) -> bool:
        """AdamW (``optimizer="adamw"``, or ``"auto"`` for a multi-modal model) rather than SGD."""
        return self.optimizer == "adamw" or (self.optimizer == "auto" and multimodal)

    def describe_schedule(self) -> str:
        """The schedule in the paper's words, e.g. ``"30 epochs, x0.5 at epoch 20"``."""
        if self.lr_epochs is not None:
            steps = ", ".join(str(e) for e in self.lr_epochs)
            where = f"epoch{'s' if len(self.lr_epochs) > 1 else ''} {steps}"
        else:
            where = ", ".join(f"{f:.3g}" for f in self.lr_steps) + " of training"
        return f"{self.epochs} epochs, x{self.lr_decay:g} at {where}" if self.lr_decay != 1 else f"{self.epochs} epochs"


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def score(metric: str, labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The task's scores: ``accuracy`` in percent, plus ``roc_auc`` (a fraction) for a binary ``roc_auc`` task.

    Examples:
        >>> score("roc_auc", np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]))
        {'accuracy': 66.667, 'roc_auc': 1.0}
    """
    out = {"accuracy": round(100.0 * accuracy_score(labels, probabilities.argmax(-1)), 3)}
    if metric == "roc_auc":
        out["roc_auc"] = round(float(roc_auc_score(labels, probabilities[:, 1])), 4) if len(set(labels)) > 1 else 0.5
    return out


def sensitivity(grid: Mapping[tuple[float, float], float]) -> dict[str, Any]:
    """Best ``(base_lr, weight_decay)`` of a grid of validation scores, and ``S_lr``, ``S_wd`` (Appendix C.3).

    Ties go to the first point in the grid's order.
    """
    best = max(grid, key=lambda point: grid[point])
    lr, wd = best
    by_lr = [value for (x, y), value in grid.items() if y == wd]
    by_wd = [value for (x, y), value in grid.items() if x == lr]
    return {"best": [lr, wd], "s_lr": round(float(np.std(by_lr)), 4), "s_wd": round(float(np.std(by_wd)), 4)}


# ---------------------------------------------------------------------------------------------
# Backbones and text encoders
# ---------------------------------------------------------------------------------------------


@dataclass
class Backbone:
    """A named VisE backbone and its image processor (what :func:`load_backbone` returns).

    Examples:
        >>> backbone = load_backbone("random-init", "random:test_resnet", image_size=32)
        >>> backbone.name, backbone.model.config.architecture
        ('random-init', 'test_resnet')
    """

    name: str
    model: ViseModel
    processor: MemotionImageProcessor
    source: str

    def with_preprocessing(self, *, crop_pct: float, interpolation: str) -> Backbone:
        """The same backbone with a processor of these transforms (its own crop size and normalisation kept).

        What makes every row of a task see the same pixels whatever the backbone kind (one preprocessing).

        Examples:
            >>> backbone = load_backbone("r", "random:test_resnet", image_size=32)
            >>> seen = backbone.with_preprocessing(crop_pct=0.875, interpolation="bilinear").processor
            >>> seen.crop_pct, seen.interpolation, seen.mean == backbone.processor.mean
            (0.875, 'bilinear', True)
        """
        processor = copy.deepcopy(self.processor)
        processor.crop_pct, processor.interpolation = float(crop_pct), str(interpolation)
        return dataclasses.replace(self, processor=processor)


def load_backbone(
    name: str,
    source: str,
    *,
    image_size: int | None = None,
    seed: int = 0,
    pretrained_file: str | None = None,
    device: str | torch.device = "auto",
) -> Backbone:
    """Load a backbone: a VisE folder or Hub id, ``random:<timm name>``, ``timm:<timm name>`` or a baseline.

    A baseline of the paper's tables is ``<kind>:<file>`` (``moco``, ``virtex``, ``icmlm``, ``vqagrid``; ``clip`` also
    takes timm's tag ``resnet50_clip.openai``), converted from its public checkpoint with every key and shape
    checked (:mod:`hf_memotion.models.vise.baselines`), with the normalisation it was trained with.

    A VisE folder or Hub id loads through ``AutoModel``; ``random:`` is a random initialisation; ``timm:`` has timm's
    ImageNet-supervised weights (a Hub tag such as ``timm:resnet50.tv_in1k``, or a local ``pretrained_file``): the
    reference rows of the paper's tables. Hub ids are fetched into the HF cache (nothing runs from the repository:
    no remote code). The model is moved to ``device`` (``"auto"``: a GPU when there is one): the linear protocol's
    features, its classifiers and the fine-tuning all run there.

    Examples:
        >>> load_backbone("baseline", "random:test_resnet", image_size=32).processor.crop_size
        32
    """
    overrides = {"ten_crop": False, "rotation_degrees": 0.0}
    if image_size:
        overrides["crop_size"] = int(image_size)
    kind, _, location = source.partition(":")
    if kind in BASELINE_KINDS:
        try:
            model, layout = load_baseline(kind, location)
        except (OSError, ValueError) as err:
            raise type(err)(f"backbone {name!r} ({source}): {err}") from None
        processor = MemotionImageProcessor.from_timm(
            layout.architecture, **{**overrides, "mean": layout.mean, "std": layout.std}
        )
        return Backbone(name, model.eval().to(resolve_device(device)), processor, source)
    if source.startswith(("random:", "timm:")):
        torch.manual_seed(seed)
        architecture = source.split(":", 1)[1]
        try:
            model = ViseModel(ViseConfig(architecture=architecture))
        except ValueError as err:
            raise ValueError(f"backbone {name!r}: {err}") from None
        if source.startswith("timm:"):
            from hf_memotion.models.timm_backbone import create_timm_model

            overlay = {"pretrained_cfg_overlay": {"file": str(pretrained_file)}} if pretrained_file else {}
            try:
                weights = create_timm_model(model.config, pretrained=True, **overlay).state_dict()
            except (OSError, RuntimeError, ValueError) as err:  # no network or cache, no such tag, a bad file
                raise FileNotFoundError(
                    f"backbone {name!r}: timm could not load ImageNet weights for {architecture!r} ({err}); give a "
                    "Hub tag timm knows (timm:resnet50.tv_in1k) with the Hub or its cache reachable, or a local "
                    "weights file (pretrained_file)"
                ) from None
            model.timm_model.load_state_dict(weights)
        processor = MemotionImageProcessor.from_timm(architecture, **overrides)
    else:
        local = Path(source)
        if not local.exists() and (source.startswith((".", "/")) or source.count("/") != 1):
            raise FileNotFoundError(
                f"backbone {name!r}: {source} is neither a folder (scripts/pretrain_vise.py writes one) nor a Hub id"
            )
        try:
            model = ViseModel.from_pretrained(source)
        except OSError as err:
            raise FileNotFoundError(f"backbone {name!r}: cannot load a VisE model from {source}: {err}") from None
        try:  # the processor saved beside the backbone, else the architecture's timm data config
            processor = MemotionImageProcessor.from_pretrained(source)
            for key, value in overrides.items():
                setattr(processor, key, value)
        except OSError:
            processor = MemotionImageProcessor.from_timm(model.config.architecture, **overrides)
    return Backbone(name, model.eval().to(resolve_device(device)), processor, source)


class ImageTextClassifier(nn.Module):
    """A VisE backbone and a text encoder trained together, one linear classifier over both (Table 14's setting).

    The sentence embedding is :func:`sentence_embedding` of the text encoder, concatenated to the image's pooled
    features. A downstream evaluation model only (nothing saves it), so a plain module under ``Trainer``.

    Examples:
        >>> encoder = TextEncoder("tiny:bert", corpus=["a kind meme"])
        >>> model = ImageTextClassifier(ViseModel(ViseConfig(architecture="test_resnet")), encoder.model, 2)
        >>> tokens = encoder.tokenize(["a kind meme", "a meme"], padding=True, return_tensors="pt")
        >>> out = model(torch.zeros(2, 3, 64, 64), tokens["input_ids"], tokens["attention_mask"], torch.tensor([1, 0]))
        >>> out.logits.shape, bool(out.loss > 0)
        (torch.Size([2, 2]), True)
    """

    def __init__(self, image: ViseModel, text: nn.Module, num_labels: int):
        super().__init__()
        self.image, self.text = image, text
        self.classifier = nn.Linear(pooled_width(image.timm_model) + text.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        """Logits over the labels; with ``labels``, the cross-entropy."""
        image = self.image(pixel_values).pooler_output
        text = sentence_embedding(
            self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask
        )
        logits = self.classifier(torch.cat([image, text.to(image.dtype)], dim=-1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# ---------------------------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------------------------


class _Pixels(torch.utils.data.Dataset):
    """Decoded, transformed images of a list of paths: what a ``DataLoader`` reads (in worker processes if asked)."""

    def __init__(self, backbone: Backbone, paths: Sequence[Any], transform):
        self.processor, self.paths, self.transform = backbone.processor, list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.processor.load_image(self.paths[i]))


def _batches(
    backbone: Backbone, paths: Sequence[Any], transform, batches: Sequence[Sequence[int]], workers: int
) -> Iterator[torch.Tensor]:
    """The pixels of each batch of row indices, on the backbone's device; images decoded by ``workers`` processes.

    With no worker the images are decoded here, one after another, in the batches' order (so a seeded random
    augmentation draws what it drew before this ran through a ``DataLoader``).
    """
    device = backbone.model.device
    images = _Pixels(backbone, paths, transform)
    if workers <= 0:  # no DataLoader: it would draw a seed from torch's generator and shift the augmentation's draws
        for batch in batches:
            yield torch.stack([images[i] for i in batch]).to(device)
        return
    loader = torch.utils.data.DataLoader(
        images, batch_sampler=[list(b) for b in batches], num_workers=workers, pin_memory=device.type == "cuda"
    )
    for pixels in loader:
        yield pixels.to(device, non_blocking=True)


@torch.inference_mode()
def _features(backbone: Backbone, split: datasets.Dataset, batch_size: int, workers: int = 0) -> np.ndarray:
    transform = backbone.processor.eval_transform(ten_crop=False)
    batches = [range(start, min(start + batch_size, len(split))) for start in range(0, len(split), batch_size)]
    rows = [
        backbone.model(pixels).pooler_output.float().cpu().numpy()
        for pixels in _batches(backbone, split["image"], transform, batches, workers)
    ]
    return np.concatenate(rows)


def _linear_layers(
    width: int,
    num_labels: int,
    points: Sequence[tuple[float, float]],
    settings: ProtocolArguments,
    adamw: bool,
    device: torch.device,
) -> list[tuple[nn.Linear, torch.optim.Optimizer, float]]:
    """A freshly initialised linear classifier and its optimiser per grid point (the same start for every point).

    Initialised on the CPU (the same start on every device), then moved to ``device``.
    """
    out = []
    for base, wd in points:
        torch.manual_seed(settings.seed)
        layer = nn.Linear(width, num_labels)
        nn.init.normal_(layer.weight, std=0.01)
        nn.init.zeros_(layer.bias)
        layer = layer.to(device)
        lr = settings.learning_rate(base)
        if adamw:
            optimizer = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=wd)
        else:
            optimizer = torch.optim.SGD(layer.parameters(), lr=lr, momentum=settings.momentum, weight_decay=wd)
        out.append((layer, optimizer, lr))
    return out


def _fit_linear(
    train: tuple[np.ndarray, np.ndarray],
    num_labels: int,
    point: tuple[float, float],
    settings: ProtocolArguments,
    adamw: bool,
    device: str | torch.device = "cpu",
) -> nn.Linear:
    """One grid point on cached features, on ``device`` (the batches' order drawn on the CPU, the same everywhere)."""
    device = torch.device(device)
    x, y = torch.from_numpy(train[0]).to(device), torch.from_numpy(train[1]).long().to(device)
    ((layer, optimizer, lr),) = _linear_layers(x.shape[1], num_labels, [point], settings, adamw, device)
    generator = torch.Generator().manual_seed(settings.seed)
    schedule = settings.epoch_schedule()
    for epoch in range(settings.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule(epoch)
        for batch in torch.randperm(len(x), generator=generator).split(settings.batch_size):
            batch = batch.to(device)
            optimizer.zero_grad()
            nn.functional.cross_entropy(layer(x[batch]), y[batch]).backward()
            optimizer.step()
    return layer


def _fit_linear_augmented(
    backbone: Backbone,
    train: datasets.Dataset,
    text: np.ndarray | None,
    num_labels: int,
    points: Sequence[tuple[float, float]],
    settings: ProtocolArguments,
    adamw: bool,
    workers: int = 0,
) -> list[nn.Linear]:
    """Every grid point together on augmented features (the frozen backbone runs once per batch for all of them).

    Each epoch draws new crops; every point's classifier takes a step on the same features, in the batches it would
    have had alone, so the grid costs one backbone pass per epoch. Everything runs on the backbone's device; the
    images are decoded by ``workers`` processes (0: here, which keeps the seeded augmentation's draws).
    """
    device = backbone.model.device
    width = pooled_width(backbone.model.timm_model) + (0 if text is None else text.shape[1])
    layers = _linear_layers(width, num_labels, points, settings, adamw, device)
    paths, y = list(train["image"]), torch.as_tensor(list(train["label"])).long().to(device)
    text_features = None if text is None else torch.from_numpy(text).to(device)
    transform = backbone.processor.train_transform()
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # the augmentation's draws
    schedule = settings.epoch_schedule()
    bar = tqdm(total=settings.epochs, desc="linear (augmented)", disable=not show_progress(), leave=False)
    for epoch in range(settings.epochs):
        for _, optimizer, lr in layers:
            for group in optimizer.param_groups:
                group["lr"] = lr * schedule(epoch)
        batches = list(torch.randperm(len(paths), generator=generator).split(settings.batch_size))
        pixel_batches = _batches(backbone, paths, transform, [b.tolist() for b in batches], workers)
        for batch, pixels in zip(batches, pixel_batches, strict=True):
            batch = batch.to(device)
            with torch.inference_mode():
                features = backbone.model(pixels).pooler_output
            features = features.float().clone()
            if text_features is not None:
                features = torch.cat([features, text_features[batch]], dim=1)
            for layer, optimizer, _ in layers:
                optimizer.zero_grad()
                nn.functional.cross_entropy(layer(features), y[batch]).backward()
                optimizer.step()
        bar.update()
    bar.close()
    return [layer for layer, _, _ in layers]


@torch.inference_mode()
def _score_layer(layer: nn.Linear, cache: Mapping[str, tuple[np.ndarray, np.ndarray]], metric: str) -> dict:
    device = layer.weight.device
    return {
        name: score(metric, y, layer(torch.from_numpy(x).to(device)).softmax(-1).cpu().numpy())
        for name, (x, y) in cache.items()
    }


class _FinetuneData(torch.utils.data.Dataset):
    """Images (augmented or centre-cropped), labels, and either frozen text features or token ids."""

    def __init__(
        self,
        split: datasets.Dataset,
        processor: MemotionImageProcessor,
        train: bool,
        text: np.ndarray | None = None,
        tokens: Mapping[str, list] | None = None,
    ):
        self.paths, self.labels = split["image"], split["label"]
        self.processor, self.text, self.tokens = processor, text, tokens
        self.transform = processor.train_transform() if train else processor.eval_transform(ten_crop=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"pixel_values": self.transform(self.processor.load_image(self.paths[i])), "labels": self.labels[i]}
        if self.text is not None:
            item["extra_features"] = torch.from_numpy(self.text[i])
        if self.tokens is not None:
            item.update({k: v[i] for k, v in self.tokens.items()})
        return item


def _collate_with_tokens(tokenizer):
    """Stack images and labels, pad token ids (the text encoder's pad id) and attention masks."""

    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        padded = tokenizer.pad(
            [{"input_ids": i["input_ids"], "attention_mask": i["attention_mask"]} for i in items], return_tensors="pt"
        )
        return {
            "pixel_values": torch.stack([i["pixel_values"] for i in items]),
            "labels": torch.tensor([i["labels"] for i in items]),
            **padded,
        }

    return collate


def _finetune_point(
    backbone: Backbone,
    repeat: datasets.DatasetDict,
    task: DownstreamTask,
    setting: str,
    text: Mapping[str, np.ndarray] | None,
    encoder: TextEncoder | None,
    lr: float,
    wd: float,
    settings: ProtocolArguments,
    workdir: Path,
) -> dict[str, dict[str, float]]:
    torch.manual_seed(settings.seed)
    collator, tokens = None, None
    if setting == "image_text_finetuned":
        import copy

        model = ImageTextClassifier(copy.deepcopy(backbone.model), copy.deepcopy(encoder.model), len(task.label_names))
        model.image.train()
        tokens = {name: dict(encoder.tokenize(repeat[name]["text"])) for name in repeat}
        collator = _collate_with_tokens(encoder.tokenizer)
    else:
        extra = 0 if text is None else int(text["train"].shape[1])
        config = ViseConfig(
            architecture=backbone.model.config.architecture,
            model_args=backbone.model.config.model_args,
            num_labels=len(task.label_names),
            extra_features=extra,
            id2label=dict(enumerate(task.label_names)),
        )
        model = ViseForImageClassification(config)
        model.vise.load_state_dict(backbone.model.state_dict())
    adamw = settings.uses_adamw(multimodal=setting != "image_only")

    def data(name: str, train: bool) -> _FinetuneData:
        return _FinetuneData(
            repeat[name],
            backbone.processor,
            train,
            None if text is None else text[name],
            None if tokens is None else tokens[name],
        )

    forced_cpu = backbone.model.device.type == "cpu" and torch.cuda.is_available()  # device: cpu on a GPU machine
    args = settings.to_training_arguments(
        workdir, learning_rate=lr, weight_decay=wd, adamw=adamw, use_cpu=True if forced_cpu else None
    )
    trainer = MemotionTrainer(model=model, args=args, train_dataset=data("train", True), data_collator=collator)
    trainer.train()
    out = {}
    for name in ("validation", "test"):
        logits = trainer.predict(data(name, False)).predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        out[name] = score(task.metric, np.asarray(repeat[name]["label"]), torch.from_numpy(logits).softmax(-1).numpy())
    return out


def _settings_key(settings: ProtocolArguments, extra: Mapping[str, Any]) -> str:
    values = {k: v for k, v in asdict(settings).items() if k != "extra" or v}  # no stock fields: the key of before
    payload = json.dumps({**values, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def evaluate_backbone(
    backbone: Backbone,
    task: DownstreamTask,
    protocol: str,
    settings: ProtocolArguments,
    output_dir: str | os.PathLike,
    text_encoder: TextEncoder | None = None,
    *,
    setting: str | None = None,
    linear_features: str = "cached",
    decode_workers: int = 0,
) -> dict[str, Any]:
    """Run one protocol's grid for one backbone on every split of one task, on the backbone's device.

    Args:
        backbone: The backbone (:func:`load_backbone`).
        task: The task (:func:`hf_memotion.data.downstream.read_task`).
        protocol: ``"linear"`` or ``"finetune"``.
        settings: The grid and schedule.
        output_dir: Where finished grid points are kept (``runs/<task>/<backbone>/<protocol>/``).
        text_encoder: For a task with texts in a setting that reads them.
        setting: One of :data:`SETTINGS` (default: ``image_text_frozen`` for a task with texts, else
            ``image_only``).
        linear_features: ``"augmented"`` or ``"cached"`` (the linear protocol's training features).
        decode_workers: Processes decoding images for the linear protocol (0: this one). Cached features are the
            same with any number; augmented ones draw other crops with workers, so a non-zero count is part of the
            grid points' key.

    Returns:
        ``task``, ``setting``, ``backbone``, ``protocol``, ``metric``, the schedule (``batch_size``, ``epochs``,
        ``schedule``, ``optimizer``); per split the grid of validation and test scores and the chosen point;
        ``validation``/``test`` mean and std of the chosen points' scores; ``base_lr``, ``weight_decay`` (the most
        frequent choice) and every split's choice; ``s_lr``, ``s_wd`` (mean and std over splits).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    setting = setting or ("image_text_frozen" if task.has_text else "image_only")
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    if setting != "image_only" and not task.has_text:
        raise ValueError(f"task {task.name!r} has no texts: only the image_only setting applies")
    if protocol not in SETTING_PROTOCOLS[setting]:
        raise ValueError(f"setting {setting!r} is fine-tuned only (both encoders train): protocol 'finetune'")
    if linear_features not in LINEAR_FEATURES:
        raise ValueError(f"linear_features must be one of {LINEAR_FEATURES}, got {linear_features!r}")
    reads_text = setting != "image_only"
    if reads_text and text_encoder is None:
        raise ValueError(f"task {task.name!r} has texts: give a text encoder (text_encoder: a folder or Hub id)")
    default_setting = setting == ("image_text_frozen" if task.has_text else "image_only")
    folder = protocol if default_setting else f"{protocol}-{setting}"  # the default keeps the folders of before
    runs = Path(output_dir) / "runs" / task.name / backbone.name / folder
    augmented = protocol == "linear" and linear_features == "augmented"
    extra = {"backbone": backbone.source, "text": getattr(text_encoder, "source", None) if reads_text else None}
    if not default_setting:
        extra["setting"] = setting
    if augmented:
        extra["linear_features"] = "augmented"
        if decode_workers:
            extra["decode_workers"] = int(decode_workers)
    key = _settings_key(settings, extra)
    primary = "roc_auc" if task.metric == "roc_auc" else "accuracy"
    points = [(lr, wd) for wd in settings.weight_decays for lr in settings.base_learning_rates]
    adamw = settings.uses_adamw(multimodal=reads_text)
    splits = []
    bar = tqdm(
        total=len(points) * len(task.repeats),
        desc=f"{task.name} {backbone.name} {folder}",
        disable=not show_progress(),
        leave=False,
    )
    for index, repeat in enumerate(task.repeats):
        rows = {name: [repeat[name]["image"], repeat[name]["label"]] for name in repeat}
        split_key = _settings_key(settings, {"base": key, "rows": rows})  # a finished point is reused for the same data
        targets = {point: runs / f"split{index}" / f"lr{point[0]:g}_wd{point[1]:g}.json" for point in points}
        grid = {}
        for point, target in targets.items():
            previous = json.loads(target.read_text()) if target.is_file() else None
            if previous is not None and previous.get("key") == split_key:
                grid[point] = previous
        todo = [p for p in points if p not in grid]
        text = None
        if todo and setting == "image_text_frozen":
            text = {name: text_encoder.encode(repeat[name]["text"]) for name in repeat}
        results: dict[tuple[float, float], dict] = {}
        if todo and protocol == "linear":
            cache = {}
            for name in repeat:
                if augmented and name == "train":
                    continue
                x = _features(backbone, repeat[name], settings.eval_batch_size, decode_workers)
                if text is not None:
                    x = np.concatenate([x, text[name]], axis=1)
                cache[name] = (x.astype(np.float32), np.asarray(repeat[name]["label"]))
            if augmented:
                layers = _fit_linear_augmented(
                    backbone,
                    repeat["train"],
                    None if text is None else text["train"],
                    len(task.label_names),
                    todo,
                    settings,
                    adamw,
                    decode_workers,
                )
            else:
                train = cache.pop("train")
                device = backbone.model.device
                layers = [_fit_linear(train, len(task.label_names), p, settings, adamw, device) for p in todo]
            results = {p: _score_layer(layer, cache, task.metric) for p, layer in zip(todo, layers, strict=True)}
        for point in todo:
            lr = settings.learning_rate(point[0])
            if protocol == "finetune":
                results[point] = _finetune_point(
                    backbone,
                    repeat,
                    task,
                    setting,
                    text,
                    text_encoder,
                    lr,
                    point[1],
                    settings,
                    runs / f"split{index}" / "trainer",
                )
            grid[point] = {
                "key": split_key,
                "base_lr": point[0],
                "weight_decay": point[1],
                "learning_rate": lr,
                **results[point],
            }
            targets[point].parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(targets[point], json.dumps(grid[point], indent=2))
        bar.update(len(points))
        grid = {p: grid[p] for p in points}
        chosen = sensitivity({point: r["validation"][primary] for point, r in grid.items()})
        best = grid[tuple(chosen["best"])]
        splits.append(
            {
                "chosen": chosen,
                "validation": best["validation"],
                "test": best["test"],
                "grid": [
                    {"base_lr": p[0], "weight_decay": p[1], "validation": r["validation"], "test": r["test"]}
                    for p, r in grid.items()
                ],
            }
        )
    bar.close()
    choices = [tuple(s["chosen"]["best"]) for s in splits]
    common = max(choices, key=choices.count)  # the most frequent choice; the earliest split's among equals
    summary: dict[str, Any] = {
        "task": task.name,
        "setting": setting,
        "backbone": backbone.name,
        "source": backbone.source,
        "protocol": protocol,
        "metric": primary,
        "splits": len(splits),
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "schedule": settings.describe_schedule(),
        "optimizer": "adamw" if adamw else "sgd",
        "linear_features": linear_features if protocol == "linear" else None,
        "base_lr": common[0],
        "weight_decay": common[1],
        "base_lrs": [c[0] for c in choices],
        "weight_decays": [c[1] for c in choices],
    }
    for name in ("s_lr", "s_wd"):
        values = [s["chosen"][name] for s in splits]
        summary[name] = round(float(np.mean(values)), 4)
        summary[f"{name}_std"] = round(float(np.std(values)), 4)
    for part in ("validation", "test"):
        for name in splits[0][part]:
            values = [s[part][name] for s in splits]
            summary[f"{part}_{name}_mean"] = round(float(np.mean(values)), 4)
            summary[f"{part}_{name}_std"] = round(float(np.std(values)), 4)
    summary["per_split"] = splits
    return summary
