"""VisE multi-task pretraining (Section 3.3 and Appendix C.1 of the VisE paper) with ``transformers.Trainer``.

The mined label shards (:func:`~hf_memotion.vise.mining.mine_labels`) are streamed as a ``datasets``
``IterableDataset``: nothing is loaded whole, so the corpus may be larger than memory or disk (point
``labels`` at a remote ``hf://`` or ``s3://`` folder). Under ``accelerate launch`` the shards are split
across the processes (accelerate shards a ``datasets`` stream by file when there are at least as many
files as processes; batches are not dispatched from the main process). Images are decoded in the
collator by the library's checked decoder; an unreadable image is skipped with a warning naming the
post, so a multi-day run does not die on one bad file.

Optimisation is the paper's: SGD, momentum 0.9, weight decay 1e-4, learning rate ``0.1 / 256 x
global batch``, linear warm-up from 0 over the first 5% of the iterations, then a step decay:
``"imagenet"`` (the 1.2M-image models: x0.1 at 30%, 60% and 90% of training, as in the common
90-epoch ImageNet recipe) or ``"vise-250m"`` (ten halvings spread evenly over training).

Example:
    >>> schedule = LearningRateSchedule(total_steps=100, warmup_fraction=0.05, decay="imagenet")
    >>> [round(schedule(step), 3) for step in (0, 4, 5, 29, 30, 60, 95)]
    [0.0, 0.8, 1.0, 1.0, 0.1, 0.01, 0.001]
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from hf_memotion.config import settings_from_dict
from hf_memotion.data.images import ImageDecodeError
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor
from hf_memotion.training.trainer import LoggingProgressCallback, show_progress
from hf_memotion.vise.configuration_vise import ViseConfig
from hf_memotion.vise.mining import label_features
from hf_memotion.vise.modeling_vise import ViseForPretraining

__all__ = [
    "DECAY_SCHEDULES",
    "LearningRateSchedule",
    "PretrainingCollator",
    "PretrainingSettings",
    "VisePretrainingTrainer",
    "load_mined_labels",
    "plot_pretraining_curves",
    "pretrain_vise",
]

logger = logging.getLogger(__name__)

# decay name -> (milestones as fractions of all iterations, factor applied at each)
DECAY_SCHEDULES: dict[str, tuple[tuple[float, ...], float]] = {
    "imagenet": ((0.3, 0.6, 0.9), 0.1),
    "vise-250m": (tuple(i / 10 for i in range(1, 11)), 0.5),
    "constant": ((), 1.0),
}


@dataclass(frozen=True)
class LearningRateSchedule:
    """Multiplier of the peak learning rate at each step: linear warm-up, then a step decay.

    Attributes:
        total_steps: Optimisation steps of the whole run.
        warmup_fraction: Share of the steps over which the rate rises linearly from 0 (paper: 5%).
        decay: A key of :data:`DECAY_SCHEDULES`.

    Example:
        >>> schedule = LearningRateSchedule(total_steps=20, warmup_fraction=0.0, decay="vise-250m")
        >>> schedule(0), schedule(2), schedule(19)
        (1.0, 0.5, 0.001953125)
    """

    total_steps: int
    warmup_fraction: float = 0.05
    decay: str = "imagenet"

    def __post_init__(self):
        if self.decay not in DECAY_SCHEDULES:
            raise ValueError(f"decay must be one of {sorted(DECAY_SCHEDULES)}, got {self.decay!r}")
        if self.total_steps < 1 or not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError("total_steps must be positive and warmup_fraction in [0, 1)")

    def __call__(self, step: int) -> float:
        """The multiplier at ``step`` (0-based)."""
        warmup = round(self.warmup_fraction * self.total_steps)
        if step < warmup:
            return step / warmup
        milestones, factor = DECAY_SCHEDULES[self.decay]
        passed = sum(1 for m in milestones if step >= round(m * self.total_steps))
        return factor**passed


@dataclass
class PretrainingSettings:
    """Settings of one pretraining run (the paper's optimisation by default).

    Attributes:
        architecture: timm backbone (``"resnet50"``, ``"resnext101_32x16d"``, ...).
        model_args: Extra ``timm.create_model`` arguments.
        image_size: Training crop side (224 in the paper).
        batch_size: Global batch (split across processes; 1920 for ResNet in the paper).
        gradient_accumulation_steps: Steps accumulated per update (the global batch counts them).
        epochs: Passes over the labelled posts; the number of iterations follows from ``mining.json``.
        max_steps: Iterations, instead of ``epochs``.
        base_learning_rate: Rate per 256 images (0.1): the peak rate is ``base / 256 x global batch``.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        warmup_fraction: Share of iterations of linear warm-up.
        decay: ``"imagenet"``, ``"vise-250m"`` or ``"constant"``.
        prior_probability: pi of the heads' bias initialisation.
        shuffle_buffer: Posts in the streaming shuffle buffer (shard order is shuffled too).
        save_steps: Checkpoint every this many iterations (a killed run resumes from the last).
        logging_steps: Log both losses every this many iterations.
        dataloader_num_workers: Decoding processes per training process.
        seed: Seed of initialisation, shuffling and augmentation.

    Example:
        >>> settings = PretrainingSettings.from_dict({"architecture": "resnet50", "batch_size": 1920})
        >>> settings.learning_rate()
        0.75
    """

    architecture: str = "resnet50"
    model_args: dict[str, Any] = field(default_factory=dict)
    image_size: int = 224
    batch_size: int = 256
    gradient_accumulation_steps: int = 1
    epochs: float = 1.0
    max_steps: int | None = None
    base_learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    decay: str = "imagenet"
    prior_probability: float = 0.01
    shuffle_buffer: int = 10_000
    save_steps: int = 500
    logging_steps: int = 10
    dataloader_num_workers: int = 0
    seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> PretrainingSettings:
        """Build from a config section, naming unknown keys."""
        return settings_from_dict(cls, values, "pretraining")

    def learning_rate(self) -> float:
        """Peak learning rate: ``base / 256 x global batch`` (the global batch includes accumulation)."""
        return self.base_learning_rate / 256 * self.batch_size


def _label_shards(labels: str | os.PathLike) -> list[str]:
    folder = str(labels)
    if "://" in folder:  # a remote folder (fsspec): the datasets loader lists it
        return [folder.rstrip("/") + "/labels-*.parquet"]
    files = sorted(str(p) for p in Path(folder).glob("labels-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no labels-*.parquet shards in {folder}: run scripts/mine_vise_labels.py first")
    return files


def load_mined_labels(labels: str | os.PathLike, *, streaming: bool = True) -> datasets.IterableDataset:
    """The mined label shards of a folder as a stream (one ``datasets`` shard per file).

    Example:
        >>> load_mined_labels("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no labels-*.parquet shards in /nonexistent: run scripts/mine_vise_labels.py first
    """
    files = _label_shards(labels)
    return datasets.load_dataset("parquet", data_files=files, split="train", streaming=streaming,
                                 features=label_features())  # fmt: skip


def read_mining_report(labels: str | os.PathLike) -> dict[str, Any]:
    """The ``mining.json`` of a mined folder (head sizes, number of posts, where the corpus came from).

    ``labels`` may be a local folder or an fsspec URL (``file://``, ``hf://datasets/...``, ``s3://``...).
    """
    import fsspec

    report_path = f"{str(labels).rstrip('/')}/mining.json"
    try:
        with fsspec.open(report_path, "r", encoding="utf-8") as handle:
            report = json.loads(handle.read())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{report_path} is missing: is {labels} the output folder of mine_vise_labels.py?"
        ) from None
    try:
        report["comment_clusters"] = int(report["comment_cluster_sizes"]["clusters"])
        report["reaction_clusters"] = int(report["reaction_cluster_sizes"]["clusters"])
        report["posts_labelled"] = int(report["posts_labelled"])
    except (KeyError, TypeError):
        raise ValueError(f"{report_path} lacks the cluster counts: mine the labels again") from None
    return report


class PretrainingCollator:
    """Rows of a label stream -> ``pixel_values``, dense soft ``comment_targets`` and ``reaction_labels``.

    Args:
        processor: Gives the training augmentation (random resized crop, flip) and normalisation.
        comment_clusters: Width of the comment target.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> png = io.BytesIO(); Image.new("RGB", (40, 40), "red").save(png, format="PNG")
        >>> collate = PretrainingCollator(MemotionImageProcessor(crop_size=32, rotation_degrees=0), 4)
        >>> row = {"post_id": "p1", "image": {"bytes": png.getvalue(), "path": None},
        ...        "comment_clusters": [1, 3], "comment_weights": [0.75, 0.25], "reaction_cluster": 2}
        >>> batch = collate([row])
        >>> batch["pixel_values"].shape, batch["comment_targets"].tolist(), batch["reaction_labels"].tolist()
        (torch.Size([1, 3, 32, 32]), [[0.0, 0.75, 0.0, 0.25]], [2])
    """

    def __init__(self, processor: MemotionImageProcessor, comment_clusters: int):
        self.transform = processor.train_transform()
        self.processor = processor
        self.comment_clusters = comment_clusters
        self.skipped = 0

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Decode, augment and stack a list of label rows (unreadable images are skipped and counted)."""
        images, targets, reactions = [], [], []
        for row in rows:
            try:
                image = self.processor.load_image(row["image"])
            except ImageDecodeError as err:
                self.skipped += 1
                logger.warning("skipping post %s: %s", row.get("post_id"), err)
                continue
            images.append(self.transform(image))
            target = torch.zeros(self.comment_clusters)
            ids = torch.as_tensor(row["comment_clusters"], dtype=torch.long)
            if len(ids) and int(ids.max()) >= self.comment_clusters:
                raise ValueError(
                    f"post {row.get('post_id')} has comment cluster {int(ids.max())} but the model has "
                    f"{self.comment_clusters}: the labels and the model come from different mining runs"
                )
            target[ids] = torch.as_tensor(row["comment_weights"], dtype=torch.float32)
            targets.append(target)
            reactions.append(int(row["reaction_cluster"]))
        if not images:  # every image of the batch was unreadable: an empty batch adds no loss
            size = self.processor.crop_size
            return {"pixel_values": torch.zeros(0, 3, size, size),
                    "comment_targets": torch.zeros(0, self.comment_clusters),
                    "reaction_labels": torch.zeros(0, dtype=torch.long)}  # fmt: skip
        return {
            "pixel_values": torch.stack(images),
            "comment_targets": torch.stack(targets),
            "reaction_labels": torch.tensor(reactions, dtype=torch.long),
        }


class VisePretrainingTrainer(Trainer):
    """``Trainer`` that also logs the two terms of Eq. (1), ``comment_loss`` and ``reaction_loss``.

    Each is averaged over the steps since the last log and over the processes. :func:`pretrain_vise` builds it
    with the paper's optimizer and schedule; use it directly to change anything else ``Trainer`` offers.

    Example:
        >>> issubclass(VisePretrainingTrainer, Trainer)
        True
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._terms: dict[str, list[torch.Tensor]] = {"comment_loss": [], "reaction_loss": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The summed loss; its two terms are kept for the next log."""
        outputs = model(**inputs)
        for name in self._terms:
            value = getattr(outputs, name, None)
            if value is not None:
                self._terms[name].append(value.detach())
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the mean comment and reaction losses to a training log."""
        if "loss" in logs:
            for name, values in self._terms.items():
                if values:
                    mean = torch.stack(values).mean()
                    logs[name] = round(float(self.accelerator.reduce(mean, reduction="mean")), 4)
                values.clear()
        super().log(logs, *args, **kwargs)


def _training_arguments(settings: PretrainingSettings, output: Path, max_steps: int) -> TrainingArguments:
    from hf_memotion.distributed import process_state

    processes = process_state().num_processes
    per_device = settings.batch_size // (processes * settings.gradient_accumulation_steps)
    if per_device < 1 or per_device * processes * settings.gradient_accumulation_steps != settings.batch_size:
        raise ValueError(
            f"batch_size {settings.batch_size} is not a multiple of {processes} processes x "
            f"{settings.gradient_accumulation_steps} accumulation steps"
        )
    return TrainingArguments(
        output_dir=str(output / "checkpoints"),
        max_steps=max_steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate(),
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        report_to=[],
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_num_workers=settings.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,
        max_grad_norm=0.0,  # the paper does not clip
        ddp_find_unused_parameters=False,  # both heads and the whole backbone take part in every step
        # each process streams its own label files instead of the main process dispatching batches
        accelerator_config={"use_configured_state": True, "dispatch_batches": False},
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not show_progress(),
    )


def pretrain_vise(
    labels: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: PretrainingSettings | None = None,
    *,
    resume: bool = True,
    license: str | None = None,
) -> dict[str, Any]:
    """Pretrain a VisE backbone on mined labels; write ``backbone/`` (``AutoModel``) and ``pretraining/``.

    Args:
        labels: A folder written by :func:`~hf_memotion.vise.mining.mine_labels` (its ``mining.json`` gives the
            head sizes and the number of posts).
        output_dir: Run folder: ``checkpoints/`` (Trainer's, resumable), ``pretraining/`` (backbone + heads),
            ``backbone/`` (a :class:`ViseModel` with its image processor), ``pretraining.json`` (settings and
            the loss curves).
        settings: Run settings (the paper's optimisation by default).
        resume: Continue from the last checkpoint in ``output_dir`` when there is one.
        license: License id for the model cards (default ``"other"``: the weights carry the data's terms;
            ``"apache-2.0"`` for the synthetic demo corpus).

    Returns:
        The report written to ``pretraining.json``.
    """
    from hf_memotion.distributed import process_state

    state = process_state()
    settings = settings or PretrainingSettings()
    output = Path(output_dir)
    mining = read_mining_report(labels)
    comment_k, reaction_k, posts = mining["comment_clusters"], mining["reaction_clusters"], mining["posts_labelled"]
    if settings.max_steps:
        max_steps = int(settings.max_steps)
    else:
        max_steps = max(1, math.ceil(settings.epochs * posts / settings.batch_size))
    config = ViseConfig(architecture=settings.architecture, model_args=settings.model_args,
                        comment_clusters=comment_k, reaction_clusters=reaction_k,
                        prior_probability=settings.prior_probability)  # fmt: skip
    torch.manual_seed(settings.seed)
    model = ViseForPretraining(config)
    processor = MemotionImageProcessor.from_timm(
        settings.architecture, crop_size=settings.image_size, ten_crop=False, rotation_degrees=0.0
    )
    stream = load_mined_labels(labels).shuffle(seed=settings.seed, buffer_size=settings.shuffle_buffer)
    args = _training_arguments(settings, output, max_steps)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)  # fmt: skip
    schedule = LearningRateSchedule(max_steps, settings.warmup_fraction, settings.decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    collator = PretrainingCollator(processor, comment_k)
    trainer = VisePretrainingTrainer(model=model, args=args, train_dataset=stream, data_collator=collator,
                                     optimizers=(optimizer, scheduler))  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(LoggingProgressCallback())
    checkpoint = get_last_checkpoint(args.output_dir) if resume and Path(args.output_dir).is_dir() else None
    if checkpoint and state.is_main_process:
        logger.info("resuming from %s", checkpoint)
    if state.is_main_process:
        logger.info("pretraining %s for %d steps at peak learning rate %g (%d posts, k = %d comment / %d reaction)",
                settings.architecture, max_steps, args.learning_rate, posts, comment_k, reaction_k)  # fmt: skip
    trainer.train(resume_from_checkpoint=checkpoint)
    curves = [
        {k: e[k] for k in ("step", "loss", "comment_loss", "reaction_loss", "learning_rate") if k in e}
        for e in trainer.state.log_history
        if "loss" in e
    ]
    report = {
        "labels": str(labels),
        "settings": asdict(settings),
        "peak_learning_rate": args.learning_rate,
        "max_steps": max_steps,
        "posts": posts,
        "comment_clusters": comment_k,
        "reaction_clusters": reaction_k,
        "processes": state.num_processes,
        "resumed_from": checkpoint,
        "unreadable_images_skipped": collator.skipped,
        "demo": bool((mining.get("corpus") or {}).get("demo")),
        "curves": curves,
    }
    if state.is_main_process:
        from hf_memotion.hub.cards import vise_card, write_model_card

        backbone = trainer.model.vise
        card = vise_card({"origin": "pretrained", "architecture": settings.architecture,
                          "num_features": backbone.timm_model.num_features, **report},
                         license=license or ("apache-2.0" if report["demo"] else None))  # fmt: skip
        for folder, model in (("pretraining", trainer.model), ("backbone", backbone)):
            model.save_pretrained(output / folder)
            processor.save_pretrained(output / folder)
            write_model_card(output / folder, card)
        atomic_write_text(output / "pretraining.json", json.dumps(report, indent=2))
    state.wait_for_everyone()
    return report


def plot_pretraining_curves(curves: Sequence[Mapping[str, float]], path: str | os.PathLike) -> Path:
    """Plot the summed, comment and reaction losses and the learning rate against the step (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_memotion.io_utils import atomic_open

    fig, (losses, rate) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in ("loss", "comment_loss", "reaction_loss"):
        points = [(c["step"], c[name]) for c in curves if name in c]
        if points:
            losses.plot(*zip(*points, strict=True), label=name)
    losses.set(xlabel="step", ylabel="loss", title="Eq. (1) and its two terms")
    losses.legend()
    points = [(c["step"], c["learning_rate"]) for c in curves if "learning_rate" in c]
    if points:
        rate.plot(*zip(*points, strict=True))
    rate.set(xlabel="step", ylabel="learning rate", title="warm-up, then step decay")
    fig.tight_layout()
    target = Path(path)
    with atomic_open(target, "wb", encoding=None) as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return target
