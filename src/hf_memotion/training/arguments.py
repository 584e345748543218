"""``MemotionTrainingArguments``: stock ``TrainingArguments`` plus the papers' optimiser and schedule fields.

This is the one module that constructs ``TrainingArguments``. Every training of the library (text and
visual base models, VisE pretraining, VisE fine-tuning) gets its arguments from
:func:`build_training_arguments`, which turns a global batch into per-device sizes for the launched
processes, joins the shared process state, picks CPU or GPU, and leaves every stock field
(``bf16``, ``fp16``, ``dataloader_num_workers``, ``save_total_limit``, ``gradient_accumulation_steps``,
...) to the caller, so such a key in a YAML ``training:`` section reaches the ``Trainer`` unchanged.

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
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import TrainingArguments

__all__ = [
    "MANAGED_ARGUMENTS",
    "MemotionTrainingArguments",
    "TakesTrainingArguments",
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
        **fields: Any :class:`MemotionTrainingArguments` field (``bf16`` may also be ``"auto"``: bf16 autocast
            with fp32 master weights where the GPU, or without one the CPU, computes bf16 natively (AVX512-BF16,
            AMX), fp32 elsewhere); these win over the library's defaults (no
            reporting integrations, per-epoch logging, unused columns kept for on-the-fly transforms,
            pinned memory on a GPU only, progress bars unless ``HF_MEMOTION_PROGRESS=0``).
    """
    from hf_memotion.distributed import process_state

    processes = process_state().num_processes
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
            "use_configured_state": True,
            **({} if dispatch_batches is None else {"dispatch_batches": dispatch_batches}),
        },
        use_cpu=not torch.cuda.is_available(),
        **{**defaults, **fields},
    )
