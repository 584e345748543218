"""A training setting in two forms: the typed section a config gives, and the ``MemotionTrainingArguments`` it makes.

A ``training:`` section is read once into its typed spec: :class:`ClassifierTrainingArguments` for the Memotion base
models (:class:`VisionTrainingArguments` holds the visual family's defaults), ``PretrainingArguments`` and
``ProtocolArguments`` for VisE. Each turns into :class:`MemotionTrainingArguments` (stock ``TrainingArguments`` plus
the papers' optimiser and schedule fields) by its one method ``to_training_arguments``, through
:func:`build_training_arguments`, the one constructor of ``TrainingArguments`` in the library: it turns a global
batch into per-device sizes for the launched processes, joins the shared process state, picks CPU or GPU, and
leaves every stock field (``bf16``, ``fp16``, ``dataloader_num_workers``, ``save_total_limit``,
``gradient_accumulation_steps``, ...) to the caller, so such a key in a YAML ``training:`` section reaches the
``Trainer`` unchanged.

Examples:
    >>> args = build_training_arguments("/tmp/hf_memotion_doc_args", batch_size=32, optim="sgd", momentum=0.95,
    ...                                 lr_milestones=[40, 60], num_train_epochs=100, dataloader_num_workers=2)
    >>> args.per_device_train_batch_size, args.momentum, args.lr_milestones, args.dataloader_num_workers
    (32, 0.95, [40.0, 60.0], 2)
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from transformers import TrainingArguments

from hf_memotion.specs import parse_spec

__all__ = [
    "MANAGED_ARGUMENTS",
    "ClassifierTrainingArguments",
    "MemotionTrainingArguments",
    "TakesTrainingArguments",
    "VisionTrainingArguments",
    "build_training_arguments",
    "show_progress",
    "stock_argument_types",
]

logger = logging.getLogger(__name__)


MILESTONE_UNITS = ("epoch", "fraction", "step")


@dataclass
class MemotionTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the fields the two papers' recipes need beyond the stock ones.

    Args:
        momentum: SGD momentum when ``optim="sgd"`` (Memotion visual models 0.95, VisE 0.9).
        lr_milestones: Where the learning rate is multiplied by ``lr_decay``: epochs (``lr_milestone_unit=
            "epoch"``), fractions of training (``"fraction"``) or optimisation steps (``"step"``). With milestones
            the scheduler is warm-up (``warmup_steps``) then step decay; without, the stock ``lr_scheduler_type``.
        lr_milestone_unit: ``"epoch"``, ``"fraction"`` or ``"step"``.
        lr_decay: Factor applied at each milestone.
        decay_all_parameters: Apply ``weight_decay`` to every parameter (biases and norms included), as the
            torchvision-style recipes of VisE do; stock ``Trainer`` exempts biases and norms.
        loss_terms: Output fields (e.g. ``comment_loss``) averaged and logged beside ``loss``.

    Examples:
        >>> MemotionTrainingArguments(output_dir="/tmp/x", optim="sgd", momentum=0.9, use_cpu=True).momentum
        0.9
    """

    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (optim='sgd')."})
    lr_milestones: list[float] = field(
        default_factory=list, metadata={"help": "Epochs or fractions of training where the rate is x lr_decay."}
    )
    lr_milestone_unit: str = field(default="epoch", metadata={"help": "'epoch', 'fraction' or 'step'."})
    lr_decay: float = field(default=0.1, metadata={"help": "Factor at each milestone."})
    decay_all_parameters: bool = field(default=False, metadata={"help": "Weight decay on biases and norms too."})
    loss_terms: list[str] = field(default_factory=list, metadata={"help": "Output fields logged beside the loss."})

    def __post_init__(self):
        if self.lr_milestone_unit not in MILESTONE_UNITS:
            raise ValueError(f"lr_milestone_unit must be one of {MILESTONE_UNITS}, got {self.lr_milestone_unit!r}")
        self.lr_milestones = [float(m) for m in self.lr_milestones]
        self.loss_terms = list(self.loss_terms)
        super().__post_init__()


#: Fields the library sets from its own settings (a config gives the library's name instead).
MANAGED_ARGUMENTS = {
    "output_dir": "the run's output_dir",
    "per_device_train_batch_size": "batch_size (the global batch, split across processes)",
    "per_device_eval_batch_size": "eval_batch_size (global)",
    "num_train_epochs": "epochs",
    "accelerator_config": "nothing: the library joins the launched processes itself",
    "use_cpu": "nothing: the GPU is used when there is one",
}


@functools.cache
def stock_argument_types() -> dict[str, Any]:
    """The stock ``TrainingArguments`` fields a config may set directly (less the managed ones) and their types.

    Examples:
        >>> types = stock_argument_types()
        >>> types["max_steps"], "output_dir" in types
        (<class 'int'>, False)
    """
    import typing

    hints = typing.get_type_hints(TrainingArguments)
    types = {
        f.name: hints.get(f.name)
        for f in dataclasses.fields(TrainingArguments)
        if f.init and f.name not in MANAGED_ARGUMENTS
    }
    types["bf16"] = bool | Literal["auto"]  # "auto" is resolved by build_training_arguments
    return types


class TakesTrainingArguments:
    """For a settings dataclass whose config section may also set any stock ``TrainingArguments`` field.

    :func:`hf_memotion.specs.parse_spec` keeps those keys (type-checked) in the dataclass's ``extra`` field.

    Examples:
        >>> "bf16" in TakesTrainingArguments.spec_passthrough()
        True
    """

    @classmethod
    def spec_passthrough(cls) -> dict[str, Any]:
        """Stock ``TrainingArguments`` fields the section may set, with their annotations."""
        return stock_argument_types()


def show_progress() -> bool:
    """Progress bars on unless ``HF_MEMOTION_PROGRESS=0`` (``Trainer`` draws them on the main process only)."""
    return os.environ.get("HF_MEMOTION_PROGRESS", "1") != "0"


def _resolve_bf16(value: Any) -> bool:
    """``bf16``: ``"auto"`` is bf16 autocast (fp32 master weights) where the device has native bf16."""
    from hf_memotion.hardware import native_bf16

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if value == "auto":
        return native_bf16(device)
    if not isinstance(value, bool):
        raise ValueError(f"bf16 must be true, false or 'auto', got {value!r}")
    if value and not native_bf16(device):
        logger.warning(
            "bf16: true on a %s without native bf16: training may be far slower than fp32 "
            "(use bf16: auto to train in bf16 only where it is native)",
            device,
        )
    return value


def build_training_arguments(
    output_dir: str | os.PathLike,
    *,
    batch_size: int,
    eval_batch_size: int | None = None,
    strict_batch: bool = False,
    dispatch_batches: bool | None = None,
    use_cpu: bool | None = None,
    stock: Mapping[str, Any] | None = None,
    **fields: Any,
) -> MemotionTrainingArguments:
    """Arguments of one training: global batches split over the launched processes, and library defaults.

    Args:
        output_dir: Trainer checkpoints go here.
        batch_size: Global training batch per optimisation step (before gradient accumulation): one process
            and N processes take the same steps.
        eval_batch_size: Global evaluation batch (default: ``batch_size``).
        strict_batch: Refuse a ``batch_size`` that is not a multiple of processes x accumulation steps (else a
            warning and the nearest per-device size).
        dispatch_batches: accelerate's ``dispatch_batches`` (``False``: each process reads its own shards of a
            stream instead of the main process dispatching batches).
        use_cpu: Train on the CPU (default: only where there is no GPU); ``True`` keeps a run off a GPU machine's
            GPU (``device: cpu``), even where the process state was set up on the GPU.
        stock: The stock ``TrainingArguments`` fields a config's section set (its ``extra``): they win over
            ``fields`` (what the section's own settings make) and over the library's defaults.
        **fields: Any :class:`MemotionTrainingArguments` field (``bf16`` may also be ``"auto"``: bf16 autocast
            with fp32 master weights where the GPU, or without one the CPU, computes bf16 natively (AVX512-BF16,
            AMX), fp32 elsewhere); these win over the library's defaults (no
            reporting integrations, per-epoch logging, unused columns kept for on-the-fly transforms,
            pinned memory on a GPU only, progress bars unless ``HF_MEMOTION_PROGRESS=0``).
    """
    from hf_memotion.distributed import process_state

    fields = {**fields, **dict(stock or {})}
    state = process_state()
    processes = state.num_processes
    # the shared state is reused (one process group for every training), unless it sits on a GPU and this training
    # is asked onto the CPU: then transformers sets up a CPU state in its place, which later trainings share
    cpu = not torch.cuda.is_available() if use_cpu is None else bool(use_cpu)
    configured = not (cpu and torch.device(state.device).type != "cpu")
    accumulation = int(fields.get("gradient_accumulation_steps", 1))
    per_device = batch_size // (processes * accumulation)
    if per_device < 1 or per_device * processes * accumulation != batch_size:
        message = (
            f"batch_size {batch_size} is not a multiple of {processes} processes x {accumulation} accumulation steps"
        )
        if strict_batch:
            raise ValueError(message)
        logger.warning(message)
    eval_size = batch_size if eval_batch_size is None else eval_batch_size
    fields["bf16"] = _resolve_bf16(fields.get("bf16", False))
    defaults: dict[str, Any] = {
        "report_to": [],
        "logging_strategy": "epoch",
        "remove_unused_columns": False,  # image datasets carry raw columns that their on-the-fly transform reads
        "dataloader_pin_memory": torch.cuda.is_available(),
        "disable_tqdm": not show_progress(),
    }
    return MemotionTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=max(1, per_device),
        per_device_eval_batch_size=max(1, eval_size // processes),
        # Reuse the process state (gloo data-parallel on a CPU-only machine) instead of letting
        # TrainingArguments reset it to N independent processes.
        accelerator_config={
            "use_configured_state": configured,
            **({} if dispatch_batches is None else {"dispatch_batches": dispatch_batches}),
        },
        use_cpu=cpu,
        **{**defaults, **fields},
    )


OPTIMIZERS = ("adam", "adam_warmup", "sgd")


@dataclass
class ClassifierTrainingArguments(TakesTrainingArguments):
    """How to train one base classifier; defaults are the paper's fixed text settings (Table 5a).

    Attributes:
        learning_rate: Peak learning rate (the paper searches 1e-6..3e-4 for text models).
        optimizer: ``"adam"`` (constant rate), ``"adam_warmup"`` (linear warm-up over
            ``warmup_ratio`` of the steps, then linear decay), or ``"sgd"`` (momentum
            ``momentum``, the visual models' optimizer).
        epochs: Maximum epochs (30 for text in the paper).
        batch_size: Global training batch size: split across the processes of a data-parallel run,
            so one process and N processes take the same optimisation steps.
        eval_batch_size: Global evaluation batch size; for a ten-crop visual model counted in images (a meme is
            ten), so one forward holds at most this many images whatever the crops.
        max_grad_norm: Gradient clipping (5.0 in the paper).
        early_stopping_patience: Epochs without improvement of the validation macro-F1 before
            stopping (5 in the paper); ``None`` disables early stopping.
        warmup_ratio: Warm-up fraction for ``"adam_warmup"``.
        momentum: SGD momentum.
        weight_decay: Decoupled weight decay (0: plain Adam).
        lr_milestones: For ``"sgd"``: epochs at which the rate is multiplied by 0.1 (the paper's
            visual models: 40 and 60).
        seed: Seed for initialisation and data order.
        dataloader_num_workers: Worker processes for data loading.
        validation_fraction: Share of each fold's training rows held out to pick the best epoch and early-stop
            (0.1); ``0`` trains on all of the fold's rows for ``epochs`` and keeps the last epoch (the paper's
            visual protocol: 100 epochs, no selection).
        refit_schedule: How the refit on all rows trains for the folds' median best epoch: ``"shortened"`` (a run
            of that many epochs, its warm-up, decay and milestones fitted to it) or ``"fold"`` (the folds'
            schedule of ``epochs`` intact, stopped after the median best epoch: every step at the learning rate
            the folds had there).
        extra: Any other ``TrainingArguments`` field, passed through (e.g. ``{"fp16": True}`` on a GPU).
    """

    learning_rate: float = 2e-5
    optimizer: str = "adam"
    epochs: float = 30
    batch_size: int = 16
    eval_batch_size: int = 64
    max_grad_norm: float = 5.0
    early_stopping_patience: int | None = 5
    warmup_ratio: float = 0.1
    momentum: float = 0.95
    weight_decay: float = 0.0
    lr_milestones: tuple[float, ...] = (40, 60)
    seed: int = 0
    dataloader_num_workers: int = 0
    validation_fraction: float = 0.1
    refit_schedule: Literal["shortened", "fold"] = "shortened"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if self.early_stopping_patience and not self.validation_fraction:
            raise ValueError(
                "early_stopping_patience needs held-out rows to watch: set validation_fraction (e.g. 0.1) "
                "or early_stopping_patience: null (train every epoch, as the paper's visual models)"
            )
        if self.refit_schedule not in ("shortened", "fold"):
            raise ValueError(f"refit_schedule must be 'shortened' or 'fold', got {self.refit_schedule!r}")
        if self.learning_rate <= 0 or self.epochs <= 0 or self.batch_size < 1:
            raise ValueError("learning_rate and epochs must be positive and batch_size at least 1")
        # whole epochs stay ints (the settings' key of every run before); a compressed schedule has fractions
        self.lr_milestones = tuple(int(m) if float(m).is_integer() else float(m) for m in self.lr_milestones)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> ClassifierTrainingArguments:
        """Build from a (YAML) ``training:`` section.

        A key that is not a field here but a stock ``TrainingArguments`` field (``bf16``, ``fp16``,
        ``dataloader_persistent_workers``, ``save_total_limit``, ...) goes to ``extra`` and reaches the
        ``Trainer``; anything else is refused with the nearest valid key.

        Examples:
            >>> ClassifierTrainingArguments.from_dict({"epochs": 2, "bf16": True}).extra
            {'bf16': True}
        """
        return parse_spec(cls, values, source=source, section="training")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for reports and configs)."""
        out = asdict(self)
        out["lr_milestones"] = list(self.lr_milestones)
        return out

    @classmethod
    def spec_advice(cls, key: str, value: Any) -> str | None:
        """What to write instead, for a value of the wrong type (see :func:`hf_memotion.specs.parse_spec`)."""
        if key == "learning_rate" and isinstance(value, list):
            return "a list of learning rates is a grid: write it beside training as search: {learning_rate: [...]}"
        return None

    def to_training_arguments(
        self, output_dir: str | os.PathLike, with_eval: bool, *, use_cpu: bool | None = None
    ) -> MemotionTrainingArguments:
        """Arguments of one run; with ``with_eval``, evaluate/save every epoch and keep the best.

        ``"sgd"`` is the paper's visual schedule (x0.1 at each milestone epoch); ``"adam"`` keeps its rate constant,
        ``"adam_warmup"`` warms up linearly over ``warmup_ratio`` of the steps, then decays linearly. ``use_cpu``:
        train on the CPU on a GPU machine (default: the GPU where there is one).
        """
        sgd, warmup = self.optimizer == "sgd", self.optimizer == "adam_warmup"
        per_epoch = "epoch" if with_eval else "no"
        return build_training_arguments(
            output_dir,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            use_cpu=use_cpu,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            num_train_epochs=self.epochs,
            max_grad_norm=self.max_grad_norm,
            optim="sgd" if sgd else "adamw_torch",
            lr_scheduler_type="linear" if warmup else "constant",
            warmup_steps=float(self.warmup_ratio) if warmup else 0,
            momentum=self.momentum if sgd else MemotionTrainingArguments.momentum,
            lr_milestones=list(self.lr_milestones) if sgd else [],
            lr_milestone_unit="epoch",
            lr_decay=0.1,
            eval_strategy=per_epoch,
            save_strategy=per_epoch,
            save_total_limit=1 if with_eval else None,
            # a fold that stops is trained again from its start (finished folds are kept), so a checkpoint needs
            # the weights only: no optimizer state (about 2x the weights for Adam) is written each epoch
            save_only_model=with_eval,
            load_best_model_at_end=with_eval,
            metric_for_best_model="macro_f1" if with_eval else None,
            greater_is_better=True if with_eval else None,
            seed=self.seed,
            data_seed=self.seed,
            dataloader_num_workers=self.dataloader_num_workers,
            stock=self.extra,
        )


@dataclass
class VisionTrainingArguments(ClassifierTrainingArguments):
    """Table 4 of the Memotion paper, the visual family's training defaults.

    SGD with momentum 0.95, the rate x0.1 at epochs 40 and 60, 100 epochs with no epoch selection
    (``validation_fraction=0``) and no gradient clipping (the paper clips the textual models only).

    The learning rate is picked from a grid there (``search: {learning_rate: [...]}`` in a config); 0.01 is one of
    its values.

    Examples:
        >>> paper = VisionTrainingArguments()
        >>> paper.optimizer, paper.epochs, paper.lr_milestones, paper.early_stopping_patience
        ('sgd', 100, (40, 60), None)
    """

    optimizer: str = "sgd"
    learning_rate: float = 0.01
    epochs: float = 100
    momentum: float = 0.95
    lr_milestones: tuple[float, ...] = (40, 60)
    early_stopping_patience: int | None = None
    max_grad_norm: float = 0.0
    validation_fraction: float = 0.0
    refit_schedule: Literal["shortened", "fold"] = "fold"
