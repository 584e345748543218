"""The VisE downstream protocols (Section 4.1 and Appendix C.3 of the VisE paper): linear evaluation and fine-tuning.

For each backbone, task and protocol, a grid of base learning rates {0.025, 0.0025, 0.00025} x weight
decays {0.01, 0.001, 0.0001} is trained, with learning rate ``base / 256 x batch``; the point with the
best validation score is reported on the test split. The sensitivities are as in Appendix C.3:
``S_lr`` is the standard deviation (population, ``ddof=0``) of the validation score across the learning
rates at the best weight decay, ``S_wd`` across the weight decays at the best learning rate; scores are
accuracy in percent, or ROC AUC as a fraction, as in the paper's tables. Tasks with several random
splits (UnbiasedEmotion) run the grid on each and report mean and standard deviation.

- **linear**: the backbone is frozen; its pooled features (resize + centre crop) are computed once per
  split, and a linear classifier is trained on them with SGD (momentum 0.9). Training a linear layer on
  cached features is a few lines of torch: a ``Trainer`` per grid point would run the frozen backbone
  again every epoch.
- **finetune**: :class:`~hf_memotion.models.vise.modeling_vise.ViseForImageClassification` initialised from the
  backbone, trained end to end with ``Trainer`` and the pretraining augmentation (random resized crop,
  flip); SGD with momentum 0.9 for images, AdamW for image + text (the paper's choices).

Multi-modal tasks (Hateful Memes) concatenate a frozen text encoder's sentence embedding (attention-masked
mean of its last hidden states) to the image features. Each grid point's result is saved as it finishes
(``runs/.../*.json``): an interrupted evaluation started again skips the finished points.

Example:
    >>> sensitivity({(0.025, 0.01): 80.0, (0.0025, 0.01): 70.0, (0.025, 0.001): 60.0, (0.0025, 0.001): 50.0})
    {'best': [0.025, 0.01], 's_lr': 5.0, 's_wd': 10.0}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from sklearn.metrics import accuracy_score, roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from hf_memotion.data.downstream import DownstreamTask
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.models.vise.configuration_vise import ViseConfig
from hf_memotion.models.vise.modeling_vise import ViseForImageClassification, ViseModel
from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor
from hf_memotion.specs import parse_spec
from hf_memotion.training.arguments import TakesTrainingArguments, build_training_arguments, show_progress
from hf_memotion.training.schedules import StepSchedule, milestone_steps
from hf_memotion.training.trainer import MemotionTrainer

__all__ = [
    "PROTOCOLS",
    "Backbone",
    "ProtocolSettings",
    "TextEncoder",
    "evaluate_backbone",
    "load_backbone",
    "score",
    "sensitivity",
]

logger = logging.getLogger(__name__)

PROTOCOLS = ("linear", "finetune")


@dataclass
class ProtocolSettings(TakesTrainingArguments):
    """Settings of one protocol's grid (the paper's grid by default).

    Attributes:
        base_learning_rates: Base LRs; the rate is ``base / 256 x batch_size``.
        weight_decays: Weight decays.
        batch_size: Training batch.
        epochs: Training epochs per grid point.
        lr_steps: Fractions of training at which the rate is multiplied by ``lr_decay`` (Hateful Memes in the
            paper: 30 epochs, x0.5 at epoch 20 -> ``[0.667]``; CUB: 300 epochs, x0.1 at 100 and 200).
        lr_decay: The factor at each step.
        momentum: SGD momentum.
        optimizer: ``"auto"`` (SGD for images, AdamW for image + text fine-tuning, as the paper), ``"sgd"``,
            ``"adamw"``.
        image_size: Input side (default: the backbone's image processor's).
        eval_batch_size: Batch of feature extraction and prediction.
        seed: Seed of initialisation, batches and augmentation.
        extra: Stock ``TrainingArguments`` fields for fine-tuning (``bf16``, ``dataloader_num_workers``, ...).

    Example:
        >>> settings = ProtocolSettings(batch_size=128, epochs=300, lr_steps=[1 / 3, 2 / 3], lr_decay=0.1)  # CUB
        >>> settings.learning_rate(0.025), round(settings.epoch_schedule()(150), 3)
        (0.0125, 0.1)
    """

    base_learning_rates: Sequence[float] = (0.025, 0.0025, 0.00025)
    weight_decays: Sequence[float] = (0.01, 0.001, 0.0001)
    batch_size: int = 64
    epochs: int = 30
    lr_steps: Sequence[float] = (0.667,)
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

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any] | None, *, source: str | None = None, section: str = "protocol"
    ) -> ProtocolSettings:
        """Build from a config section, naming an unknown key and the nearest valid one."""
        return parse_spec(cls, values, source=source, section=section)

    def learning_rate(self, base: float) -> float:
        """``base / 256 x batch_size``."""
        return base / 256 * self.batch_size

    def epoch_schedule(self) -> StepSchedule:
        """The step decay over epochs (the linear probe's loop; fine-tuning applies it per step)."""
        return StepSchedule(total_steps=self.epochs, milestones=milestone_steps(self.lr_steps, self.epochs),
                            factor=self.lr_decay)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def score(metric: str, labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The task's scores: ``accuracy`` in percent, plus ``roc_auc`` (a fraction) for a binary ``roc_auc`` task.

    Example:
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

    Example:
        >>> backbone = load_backbone("random-init", "random:test_resnet", image_size=32)
        >>> backbone.name, backbone.model.config.architecture
        ('random-init', 'test_resnet')
    """

    name: str
    model: ViseModel
    processor: MemotionImageProcessor
    source: str


def load_backbone(name: str, source: str, *, image_size: int | None = None, seed: int = 0) -> Backbone:
    """Load a backbone: a VisE folder or Hub id (``AutoModel``), or ``random:<timm architecture>`` (random init).

    Hub ids are fetched into the HF cache (nothing runs from the repository: no remote code).

    Example:
        >>> load_backbone("baseline", "random:test_resnet", image_size=32).processor.crop_size
        32
    """
    overrides = {"ten_crop": False, "rotation_degrees": 0.0}
    if image_size:
        overrides["crop_size"] = int(image_size)
    if source.startswith("random:"):
        torch.manual_seed(seed)
        architecture = source.split(":", 1)[1]
        model = ViseModel(ViseConfig(architecture=architecture))
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
    return Backbone(name, model.eval(), processor, source)


class TextEncoder:
    """A frozen transformers text encoder: sentence embedding = attention-masked mean of the last hidden states.

    Args:
        source: A local folder or Hub id (loaded without remote code), or ``"tiny:bert"``: a randomly initialised
            toy BERT with a tokenizer trained on ``corpus`` (offline demos and tests only: it encodes words, not
            meaning).
        corpus: Texts for the tiny tokenizer.
        max_length: Tokens per text.

    Example:
        >>> encoder = TextEncoder("tiny:bert", corpus=["a hateful meme", "a kind meme"])
        >>> encoder.encode(["a kind meme"]).shape
        (1, 32)
    """

    def __init__(self, source: str, corpus: Sequence[str] = (), max_length: int = 64):
        from transformers import AutoModel, AutoTokenizer

        self.source = source
        self.max_length = max_length
        if source.startswith("tiny:"):
            from hf_memotion.models.text.tiny import build_tiny_text_backbone

            torch.manual_seed(0)
            config, self.tokenizer = build_tiny_text_backbone(source.split(":", 1)[1], corpus, max_length=max_length)
            self.model = AutoModel.from_config(config)
        else:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
                self.model = AutoModel.from_pretrained(source, trust_remote_code=False)
            except OSError as err:
                raise FileNotFoundError(f"text encoder {source}: {err}") from None
        self.model.eval()

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(len(texts), hidden)`` float32 sentence embeddings."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")  # fmt: skip
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.hidden_size), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------------------------


@torch.inference_mode()
def _features(backbone: Backbone, split: datasets.Dataset, batch_size: int) -> np.ndarray:
    transform = backbone.processor.eval_transform(ten_crop=False)
    rows = []
    for start in range(0, len(split), batch_size):
        paths = split[start : start + batch_size]["image"]
        pixels = torch.stack([transform(backbone.processor.load_image(p)) for p in paths])
        rows.append(backbone.model(pixels).pooler_output.float().numpy())
    return np.concatenate(rows)


def _fit_linear(train_x: np.ndarray, train_y: np.ndarray, num_labels: int, lr: float, wd: float,
                settings: ProtocolSettings) -> nn.Linear:  # fmt: skip
    torch.manual_seed(settings.seed)
    layer = nn.Linear(train_x.shape[1], num_labels)
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr, momentum=settings.momentum, weight_decay=wd)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y).long()
    generator = torch.Generator().manual_seed(settings.seed)
    schedule = settings.epoch_schedule()
    for epoch in range(settings.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule(epoch)
        for batch in torch.randperm(len(x), generator=generator).split(settings.batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(layer(x[batch]), y[batch]).backward()
            optimizer.step()
    return layer


def _linear_point(cache: Mapping[str, tuple[np.ndarray, np.ndarray]], num_labels: int, metric: str, lr: float,
                  wd: float, settings: ProtocolSettings) -> dict[str, dict[str, float]]:  # fmt: skip
    layer = _fit_linear(*cache["train"], num_labels, lr, wd, settings)
    with torch.inference_mode():
        return {
            name: score(metric, y, layer(torch.from_numpy(x)).softmax(-1).numpy())
            for name, (x, y) in cache.items()
            if name != "train"
        }


class _FinetuneData(torch.utils.data.Dataset):
    def __init__(
        self, split: datasets.Dataset, processor: MemotionImageProcessor, train: bool, text: np.ndarray | None
    ):
        self.paths, self.labels = split["image"], split["label"]
        self.processor, self.text = processor, text
        self.transform = processor.train_transform() if train else processor.eval_transform(ten_crop=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"pixel_values": self.transform(self.processor.load_image(self.paths[i])), "labels": self.labels[i]}
        if self.text is not None:
            item["extra_features"] = torch.from_numpy(self.text[i])
        return item


def _finetune_point(backbone: Backbone, repeat: datasets.DatasetDict, task: DownstreamTask,
                    text: Mapping[str, np.ndarray] | None, lr: float, wd: float, settings: ProtocolSettings,
                    workdir: Path) -> dict[str, dict[str, float]]:  # fmt: skip
    torch.manual_seed(settings.seed)
    extra = 0 if text is None else int(text["train"].shape[1])
    config = ViseConfig(architecture=backbone.model.config.architecture, model_args=backbone.model.config.model_args,
                        num_labels=len(task.label_names), extra_features=extra,
                        id2label=dict(enumerate(task.label_names)))  # fmt: skip
    model = ViseForImageClassification(config)
    model.vise.load_state_dict(backbone.model.state_dict())
    adamw = settings.optimizer == "adamw" or (settings.optimizer == "auto" and text is not None)
    train = _FinetuneData(repeat["train"], backbone.processor, True, None if text is None else text["train"])
    args = build_training_arguments(
        workdir, batch_size=settings.batch_size, eval_batch_size=settings.eval_batch_size,
        num_train_epochs=settings.epochs, learning_rate=lr, weight_decay=wd,
        optim="adamw_torch" if adamw else "sgd", momentum=settings.momentum, decay_all_parameters=True,
        lr_milestones=list(settings.lr_steps), lr_milestone_unit="fraction", lr_decay=settings.lr_decay,
        max_grad_norm=0.0, save_strategy="no", eval_strategy="no", logging_strategy="no", seed=settings.seed,
        data_seed=settings.seed, disable_tqdm=True, **settings.extra,
    )  # fmt: skip
    trainer = MemotionTrainer(model=model, args=args, train_dataset=train)
    trainer.train()
    out = {}
    for name in ("validation", "test"):
        data = _FinetuneData(repeat[name], backbone.processor, False, None if text is None else text[name])
        logits = trainer.predict(data).predictions
        out[name] = score(task.metric, np.asarray(repeat[name]["label"]), torch.from_numpy(logits).softmax(-1).numpy())
    return out


def _settings_key(settings: ProtocolSettings, extra: Mapping[str, Any]) -> str:
    values = {k: v for k, v in asdict(settings).items() if k != "extra" or v}  # no stock fields: the key of before
    payload = json.dumps({**values, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def evaluate_backbone(
    backbone: Backbone,
    task: DownstreamTask,
    protocol: str,
    settings: ProtocolSettings,
    output_dir: str | os.PathLike,
    text_encoder: TextEncoder | None = None,
) -> dict[str, Any]:
    """Run one protocol's grid for one backbone on every split of one task.

    Returns:
        ``task``, ``backbone``, ``protocol``, ``metric``; per split the grid of validation and test scores and
        the chosen point; ``validation``/``test`` mean and std of the chosen points' scores; ``base_lr``,
        ``weight_decay`` (the most frequent choice), ``s_lr``, ``s_wd`` (means over splits).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if task.has_text and text_encoder is None:
        raise ValueError(f"task {task.name!r} has texts: give a text encoder (text_encoder: a folder or Hub id)")
    runs = Path(output_dir) / "runs" / task.name / backbone.name / protocol
    key = _settings_key(settings, {"backbone": backbone.source, "text": getattr(text_encoder, "source", None)})
    primary = "roc_auc" if task.metric == "roc_auc" else "accuracy"
    points = [(lr, wd) for wd in settings.weight_decays for lr in settings.base_learning_rates]
    splits = []
    bar = tqdm(total=len(points) * len(task.repeats), desc=f"{task.name} {backbone.name} {protocol}",
               disable=not show_progress(), leave=False)  # fmt: skip
    for index, repeat in enumerate(task.repeats):
        rows = {name: [repeat[name]["image"], repeat[name]["label"]] for name in repeat}
        split_key = _settings_key(settings, {"base": key, "rows": rows})  # a finished point is reused for the same data
        text = None
        if task.has_text:
            text = {name: text_encoder.encode(repeat[name]["text"]) for name in repeat}
        cache = None
        grid = {}
        for lr_base, wd in points:
            target = runs / f"split{index}" / f"lr{lr_base:g}_wd{wd:g}.json"
            previous = json.loads(target.read_text()) if target.is_file() else None
            if previous is None or previous.get("key") != split_key:
                lr = settings.learning_rate(lr_base)
                if protocol == "linear":
                    if cache is None:
                        cache = {}
                        for name in repeat:
                            x = _features(backbone, repeat[name], settings.eval_batch_size)
                            if text is not None:
                                x = np.concatenate([x, text[name]], axis=1)
                            cache[name] = (x.astype(np.float32), np.asarray(repeat[name]["label"]))
                    result = _linear_point(cache, len(task.label_names), task.metric, lr, wd, settings)
                else:
                    result = _finetune_point(backbone, repeat, task, text, lr, wd, settings,
                                             runs / f"split{index}" / "trainer")  # fmt: skip
                previous = {"key": split_key, "base_lr": lr_base, "weight_decay": wd, "learning_rate": lr, **result}
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(target, json.dumps(previous, indent=2))
            grid[(lr_base, wd)] = previous
            bar.update()
        chosen = sensitivity({point: r["validation"][primary] for point, r in grid.items()})
        best = grid[tuple(chosen["best"])]
        splits.append({"chosen": chosen, "validation": best["validation"], "test": best["test"],
                       "grid": [{"base_lr": p[0], "weight_decay": p[1], "validation": r["validation"],
                                 "test": r["test"]} for p, r in grid.items()]})  # fmt: skip
    bar.close()
    choices = [tuple(s["chosen"]["best"]) for s in splits]
    common = max(choices, key=choices.count)  # the most frequent choice; the earliest split's among equals
    summary: dict[str, Any] = {"task": task.name, "backbone": backbone.name, "source": backbone.source,
                               "protocol": protocol, "metric": primary, "splits": len(splits),
                               "base_lr": common[0], "weight_decay": common[1],
                               "s_lr": round(float(np.mean([s["chosen"]["s_lr"] for s in splits])), 4),
                               "s_wd": round(float(np.mean([s["chosen"]["s_wd"] for s in splits])), 4)}  # fmt: skip
    for part in ("validation", "test"):
        for name in splits[0][part]:
            values = [s[part][name] for s in splits]
            summary[f"{part}_{name}_mean"] = round(float(np.mean(values)), 4)
            summary[f"{part}_{name}_std"] = round(float(np.std(values)), 4)
    summary["per_split"] = splits
    return summary
