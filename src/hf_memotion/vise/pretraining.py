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
90-epoch ImageNet recipe) or ``"vise-250m"`` (ten halvings spread evenly over training: after each eleventh).
``targets`` chooses the engagement signals (the paper's Table 3 ablation): ``"both"`` (Eq. 1), ``"comments"`` or
``"reactions"`` (one loss term).

The run goes through the shared spine (:class:`~hf_memotion.training.MemotionTrainer`); every stock
``TrainingArguments`` field (``bf16``, ``dataloader_num_workers``, ``save_total_limit``...) may be set in the
``pretraining:`` section.

Examples:
    >>> settings = PretrainingArguments.from_dict({"batch_size": 512, "decay": "vise-250m", "bf16": True})
    >>> args = settings.to_training_arguments("/tmp/hf_memotion_doc_pretrain", max_steps=100)
    >>> args.learning_rate, args.lr_milestones[:2], args.lr_decay, args.bf16, args.loss_terms
    (0.2, [9.0, 18.0], 0.5, True, ['comment_loss', 'reaction_loss'])
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
import numpy as np
import torch
from transformers.trainer_utils import get_last_checkpoint

from hf_memotion.data.images import ImageDecodeError
from hf_memotion.io_utils import atomic_write_text, check_run_folder
from hf_memotion.models.timm_backbone import pooled_width
from hf_memotion.models.vise.configuration_vise import ViseConfig
from hf_memotion.models.vise.modeling_vise import ViseForPretraining
from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor
from hf_memotion.specs import parse_spec
from hf_memotion.training.arguments import MemotionTrainingArguments, TakesTrainingArguments, build_training_arguments
from hf_memotion.training.schedules import DECAY_PRESETS
from hf_memotion.training.trainer import MemotionTrainer
from hf_memotion.vise.mining_steps import label_features

__all__ = [
    "PretrainingArguments",
    "PretrainingCollator",
    "load_mined_labels",
    "plot_pretraining_curves",
    "pretrain_vise",
]

logger = logging.getLogger(__name__)

#: The engagement signals pretraining may learn from (the paper's Table 3 ablations).
TARGETS = ("both", "comments", "reactions")


@dataclass
class PretrainingArguments(TakesTrainingArguments):
    """Settings of one pretraining run (the paper's optimisation by default).

    Attributes:
        architecture: timm backbone (``"resnet50"``, ``"resnext101_32x16d"``, ...).
        model_args: Extra ``timm.create_model`` arguments.
        image_size: Training crop side (224 in the paper).
        batch_size: Global batch (split across processes; the paper: 1920 for ResNet, 1536 for ResNeXt, over 32
            GPUs: ``configs/vise_pretrain_paper.yaml``).
        gradient_accumulation_steps: Steps accumulated per update (the global batch counts them).
        epochs: Passes over the labelled posts; the number of iterations follows from ``mining.json``.
        max_steps: Iterations, instead of ``epochs``.
        base_learning_rate: Rate per 256 images (0.1): the peak rate is ``base / 256 x global batch``.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        warmup_fraction: Share of iterations of linear warm-up.
        decay: ``"imagenet"``, ``"vise-250m"`` or ``"constant"``.
        prior_probability: pi of the heads' bias initialisation (see :class:`~hf_memotion.models.vise.ViseConfig`:
            under a softmax it does not change the loss; kept as the paper).
        targets: ``"both"`` (comments and reactions, Eq. 1), ``"comments"`` or ``"reactions"``: one loss term, the
            paper's Table 3 ablations.
        shuffle_buffer: Posts in the streaming shuffle buffer (shard order is shuffled too).
        save_steps: Checkpoint every this many iterations (a killed run resumes from the last).
        logging_steps: Log both losses every this many iterations.
        dataloader_num_workers: Decoding processes per training process.
        seed: Seed of initialisation, shuffling and augmentation.
        extra: Stock ``TrainingArguments`` fields (``bf16``, ``save_total_limit``, ...) given in the section.

    Examples:
        >>> settings = PretrainingArguments.from_dict({"architecture": "resnet50", "batch_size": 1920})
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
    targets: str = "both"
    shuffle_buffer: int = 10_000
    save_steps: int = 500
    logging_steps: int = 10
    dataloader_num_workers: int = 0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.decay not in DECAY_PRESETS:
            raise ValueError(f"decay must be one of {sorted(DECAY_PRESETS)}, got {self.decay!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")

    def loss_terms(self) -> list[str]:
        """The loss terms this run trains (and logs)."""
        return {
            "both": ["comment_loss", "reaction_loss"],
            "comments": ["comment_loss"],
            "reactions": ["reaction_loss"],
        }[self.targets]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> PretrainingArguments:
        """Build from a config section, naming an unknown key and the nearest valid one."""
        return parse_spec(cls, values, source=source, section="pretraining")

    def to_training_arguments(
        self, output_dir: str | os.PathLike, max_steps: int, *, use_cpu: bool | None = None
    ) -> MemotionTrainingArguments:
        """The run's arguments: SGD, warm-up then the step decay, both loss terms logged, no clipping.

        Each process streams its own label files (no batches dispatched by the main process); the paper's fractions
        of the run become steps (rounded). ``use_cpu``: train on the CPU on a GPU machine (default: the GPU where
        there is one).
        """
        milestones, factor = DECAY_PRESETS[self.decay]
        return build_training_arguments(
            Path(output_dir) / "checkpoints",
            batch_size=self.batch_size,
            strict_batch=True,
            dispatch_batches=False,
            use_cpu=use_cpu,
            max_steps=max_steps,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=self.learning_rate(),
            optim="sgd",
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            decay_all_parameters=True,  # torchvision-style SGD: biases and BatchNorm decayed too
            warmup_steps=round(self.warmup_fraction * max_steps),
            lr_milestones=[round(m * max_steps) for m in milestones],
            lr_milestone_unit="step",
            lr_decay=factor,
            lr_scheduler_type="constant_with_warmup",  # used when there are no milestones ("constant")
            loss_terms=self.loss_terms(),
            save_strategy="steps",
            save_steps=self.save_steps,
            save_total_limit=2,
            logging_strategy="steps",
            logging_steps=self.logging_steps,
            seed=self.seed,
            data_seed=self.seed,
            dataloader_num_workers=self.dataloader_num_workers,
            max_grad_norm=0.0,  # the paper does not clip
            # with both targets every parameter takes part in every step; with one, the other head is left out
            ddp_find_unused_parameters=self.targets != "both",
            stock=self.extra,
        )

    def learning_rate(self) -> float:
        """Peak learning rate: ``base / 256 x global batch`` (the global batch includes accumulation)."""
        return self.base_learning_rate / 256 * self.batch_size


#: The largest head or corpus size a ``mining.json`` may state (the paper's heads have 5,000 and 100 clusters).
MAX_CLUSTERS_OR_POSTS = 10**9


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

    Examples:
        >>> load_mined_labels("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no labels-*.parquet shards in /nonexistent: run scripts/mine_vise_labels.py first
    """
    files = _label_shards(labels)
    return datasets.load_dataset(
        "parquet", data_files=files, split="train", streaming=streaming, features=label_features()
    )


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
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{report_path} lacks the cluster counts: mine the labels again") from None
    for key, low in (("comment_clusters", 1), ("reaction_clusters", 1), ("posts_labelled", 0)):
        if not low <= report[key] <= MAX_CLUSTERS_OR_POSTS:
            raise ValueError(
                f"{report_path}: {key} = {report[key]} is outside {low}..{MAX_CLUSTERS_OR_POSTS}: the file is damaged; "
                "mine the labels again"
            )
    return report


class PretrainingCollator:
    """Rows of a label stream -> ``pixel_values``, dense soft ``comment_targets`` and ``reaction_labels``.

    Args:
        processor: Gives the training augmentation (random resized crop, flip) and normalisation.
        comment_clusters: Width of the comment target.
        reaction_clusters: Width of the reaction head (reaction ids past it are refused; ``None``: unchecked).
        targets: ``"both"``, ``"comments"`` or ``"reactions"``: the targets a batch carries (the model computes a
            loss term only for a target it is given).

    Examples:
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

    def __init__(
        self,
        processor: MemotionImageProcessor,
        comment_clusters: int,
        targets: str = "both",
        reaction_clusters: int | None = None,
    ):
        self.transform = processor.train_transform()
        self.processor = processor
        self.comment_clusters = comment_clusters
        self.reaction_clusters = reaction_clusters
        self.targets = targets
        self.skipped = 0

    def _checked_targets(self, row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
        """A row's comment ids and weights and its reaction cluster, refused (naming the post) unless they fit.

        Comment ids must be distinct integers in ``0..comment_clusters-1`` with one finite, non-negative weight each
        (summing to at most 1); the reaction cluster an integer in ``-1..reaction_clusters-1`` (``-1``: none).
        """
        post = row.get("post_id")
        fix = "the label shards are damaged or come from another mining run: mine the labels again"
        try:
            ids = np.asarray(row["comment_clusters"] if row["comment_clusters"] is not None else [])
            weights = np.asarray(row["comment_weights"] if row["comment_weights"] is not None else [], dtype=np.float32)
            reaction = row["reaction_cluster"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"post {post}: unreadable targets ({err}); {fix}") from None
        if ids.ndim != 1 or weights.ndim != 1 or len(ids) != len(weights):
            raise ValueError(f"post {post}: {ids.size} comment cluster id(s) but {weights.size} weight(s); {fix}")
        if len(ids) and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= self.comment_clusters):
            raise ValueError(
                f"post {post}: comment cluster ids {ids.tolist()[:8]} outside 0..{self.comment_clusters - 1} (the "
                f"model's head); {fix}"
            )
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"post {post}: comment cluster ids repeat ({ids.tolist()[:8]}); {fix}")
        if not np.isfinite(weights).all() or (weights < 0).any() or float(weights.sum()) > 1.0 + 1e-3:
            raise ValueError(f"post {post}: comment weights {weights.tolist()[:8]} are not shares of 1; {fix}")
        if isinstance(reaction, bool) or not isinstance(reaction, int | np.integer):
            raise ValueError(f"post {post}: reaction cluster {reaction!r} is not an integer; {fix}")
        limit = self.reaction_clusters or np.iinfo(np.int32).max
        if not -1 <= int(reaction) < limit:
            raise ValueError(f"post {post}: reaction cluster {reaction} outside -1..{limit - 1}; {fix}")
        return ids.astype(np.int64), weights, int(reaction)

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
            ids, weights, reaction = self._checked_targets(row)
            images.append(self.transform(image))
            target = torch.zeros(self.comment_clusters)
            target[torch.as_tensor(ids)] = torch.as_tensor(weights)
            targets.append(target)
            reactions.append(reaction)
        if not images:  # every image of the batch was unreadable: an empty batch adds no loss
            size = self.processor.crop_size
            batch = {
                "pixel_values": torch.zeros(0, 3, size, size),
                "comment_targets": torch.zeros(0, self.comment_clusters),
                "reaction_labels": torch.zeros(0, dtype=torch.long),
            }
        else:
            batch = {
                "pixel_values": torch.stack(images),
                "comment_targets": torch.stack(targets),
                "reaction_labels": torch.tensor(reactions, dtype=torch.long),
            }
        if self.targets == "comments":
            del batch["reaction_labels"]
        elif self.targets == "reactions":
            del batch["comment_targets"]
        return batch


def pretrain_vise(
    labels: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: PretrainingArguments | None = None,
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
    settings = settings or PretrainingArguments()
    output = Path(output_dir)
    check_run_folder(output, ("pretraining.json", "checkpoints", "backbone", "pretraining"), "a VisE pretraining")
    mining = read_mining_report(labels)
    comment_k, reaction_k, posts = mining["comment_clusters"], mining["reaction_clusters"], mining["posts_labelled"]
    if settings.max_steps:
        max_steps = int(settings.max_steps)
    else:
        max_steps = max(1, math.ceil(settings.epochs * posts / settings.batch_size))
    config = ViseConfig(
        architecture=settings.architecture,
        model_args=settings.model_args,
        comment_clusters=comment_k,
        reaction_clusters=reaction_k,
        prior_probability=settings.prior_probability,
    )
    torch.manual_seed(settings.seed)
    model = ViseForPretraining(config)
    processor = MemotionImageProcessor.from_timm(
        settings.architecture, crop_size=settings.image_size, ten_crop=False, rotation_degrees=0.0
    )
    stream = load_mined_labels(labels).shuffle(seed=settings.seed, buffer_size=settings.shuffle_buffer)
    args = settings.to_training_arguments(output, max_steps)
    collator = PretrainingCollator(processor, comment_k, settings.targets, reaction_clusters=reaction_k)
    trainer = MemotionTrainer(model=model, args=args, train_dataset=stream, data_collator=collator)
    checkpoint = get_last_checkpoint(args.output_dir) if resume and Path(args.output_dir).is_dir() else None
    if checkpoint and state.is_main_process:
        logger.info("resuming from %s", checkpoint)
    if state.is_main_process:
        logger.info(
            "pretraining %s for %d steps at peak learning rate %g (%d posts, k = %d comment / %d reaction)",
            settings.architecture,
            max_steps,
            args.learning_rate,
            posts,
            comment_k,
            reaction_k,
        )
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
        "targets": settings.targets,
        "resumed_from": checkpoint,
        "unreadable_images_skipped": collator.skipped,
        "demo": bool((mining.get("corpus") or {}).get("demo")),
        "curves": curves,
    }
    if state.is_main_process:
        backbone = trainer.model.vise
        card_info = {
            "origin": "pretrained",
            "architecture": settings.architecture,
            "num_features": pooled_width(backbone.timm_model),
            **report,
        }
        for folder, model in (("pretraining", trainer.model), ("backbone", backbone)):
            model.card_data.update(**card_info)
            model.card_data.license = license or ("apache-2.0" if report["demo"] else None)
            model.save_pretrained(output / folder)
            processor.save_pretrained(output / folder)
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
