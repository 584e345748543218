"""Training one classifier with ``transformers.Trainer``: the paper's settings, metrics, probabilities.

Example:
    >>> settings = ClassifierTrainingConfig(epochs=3, optimizer="adam_warmup")
    >>> args = settings.to_training_arguments("/tmp/hf_memotion_doc_run", with_eval=True)
    >>> args.max_grad_norm, args.num_train_epochs, args.lr_scheduler_type.value, args.metric_for_best_model
    (5.0, 3, 'linear', 'macro_f1')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainingArguments,
)

from hf_memotion.models.heads import split_logits

__all__ = [
    "ClassifierTrainingConfig",
    "best_epoch",
    "fit_classifier",
    "make_compute_metrics",
    "predict_probabilities",
]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adam_warmup", "sgd")


@dataclass
class ClassifierTrainingConfig:
    """How to train one base classifier; defaults are the paper's fixed text settings (Table 5a).

    Attributes:
        learning_rate: Peak learning rate (the paper searches 1e-6..3e-4 for text models).
        optimizer: ``"adam"`` (constant rate), ``"adam_warmup"`` (linear warm-up over
            ``warmup_ratio`` of the steps, then linear decay), or ``"sgd"`` (momentum
            ``momentum``, the visual models' optimizer).
        epochs: Maximum epochs (30 for text in the paper).
        batch_size: Global training batch size: split across the processes of a data-parallel run,
            so one process and N processes take the same optimisation steps.
        eval_batch_size: Global evaluation batch size.
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
    lr_milestones: tuple[int, ...] = (40, 60)
    seed: int = 0
    dataloader_num_workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.learning_rate <= 0 or self.epochs <= 0 or self.batch_size < 1:
            raise ValueError("learning_rate and epochs must be positive and batch_size at least 1")
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ClassifierTrainingConfig:
        """Build from a (YAML) mapping, naming any unknown key."""
        from hf_memotion.config import settings_from_dict

        return settings_from_dict(cls, values, "training")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for reports and configs)."""
        out = asdict(self)
        out["lr_milestones"] = list(self.lr_milestones)
        return out

    def to_training_arguments(self, output_dir: str | os.PathLike, with_eval: bool) -> TrainingArguments:
        """``TrainingArguments`` for one run; with ``with_eval``, evaluate/save every epoch and keep the best."""
        scheduler: dict[str, Any] = {"lr_scheduler_type": "constant", "warmup_steps": 0}
        if self.optimizer == "adam_warmup":
            scheduler = {"lr_scheduler_type": "linear", "warmup_steps": float(self.warmup_ratio)}
        optim: dict[str, Any] = {"optim": "adamw_torch", "weight_decay": self.weight_decay}
        per_epoch = "epoch" if with_eval else "no"
        from hf_memotion.distributed import process_state

        processes = process_state().num_processes
        if self.batch_size % processes:
            logger.warning("batch_size %d is not a multiple of %d processes", self.batch_size, processes)
        return TrainingArguments(
            output_dir=str(output_dir),
            learning_rate=self.learning_rate,
            num_train_epochs=self.epochs,
            per_device_train_batch_size=max(1, self.batch_size // processes),
            per_device_eval_batch_size=max(1, self.eval_batch_size // processes),
            max_grad_norm=self.max_grad_norm,
            eval_strategy=per_epoch,
            save_strategy=per_epoch,
            save_total_limit=1 if with_eval else None,
            load_best_model_at_end=with_eval,
            metric_for_best_model="macro_f1" if with_eval else None,
            greater_is_better=True if with_eval else None,
            logging_strategy="epoch",
            report_to=[],
            seed=self.seed,
            data_seed=self.seed,
            dataloader_num_workers=self.dataloader_num_workers,
            dataloader_pin_memory=torch.cuda.is_available(),
            remove_unused_columns=False,  # image datasets carry raw columns that their on-the-fly transform reads
            # Reuse the process state (gloo data-parallel on a CPU-only machine) instead of letting
            # TrainingArguments reset it to N independent processes.
            accelerator_config={"use_configured_state": True},
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=not show_progress(),
            **scheduler,
            **optim,
            **self.extra,
        )


def show_progress() -> bool:
    """Progress bars on unless ``HF_MEMOTION_PROGRESS=0`` (``Trainer`` draws them on the main process only)."""
    return os.environ.get("HF_MEMOTION_PROGRESS", "1") != "0"


class LoggingProgressCallback(ProgressCallback):
    """Trainer's progress bars (main process only), with the per-epoch log dicts sent to the logger, not stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Log the metrics of this step at INFO level on the main process."""
        if state.is_world_process_zero and logs:
            logger.info(
                "epoch %.2f: %s",
                state.epoch or 0.0,
                {k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()},
            )


def make_compute_metrics(problem_labels: Mapping[str, Sequence[str]]) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for ``Trainer``: macro-F1 per problem and their mean as ``macro_f1``."""
    names = list(problem_labels)

    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        labels = np.asarray(prediction.label_ids)
        if labels.ndim == 1:
            labels = labels[:, None]
        scores = {}
        for column, (name, problem_logits) in enumerate(split_logits(np.asarray(logits), problem_labels).items()):
            keep = labels[:, column] != -100
            scores[f"f1_{name}"] = float(
                f1_score(labels[keep, column], problem_logits[keep].argmax(-1), average="macro", zero_division=0)
            )
        scores["macro_f1"] = float(np.mean([scores[f"f1_{n}"] for n in names]))
        return scores

    return compute


def _install_sgd(trainer: Trainer, training: ClassifierTrainingConfig, steps_per_epoch: int) -> None:
    """SGD with momentum and a x0.1 step at each milestone epoch (the paper's visual schedule).

    ``Trainer`` has no per-epoch multi-step schedule, so the optimizer and scheduler are built here.
    """
    parameters = [p for p in trainer.model.parameters() if p.requires_grad]
    trainer.optimizer = torch.optim.SGD(
        parameters, lr=training.learning_rate, momentum=training.momentum, weight_decay=training.weight_decay
    )
    trainer.lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(
        trainer.optimizer, milestones=[m * steps_per_epoch for m in training.lr_milestones], gamma=0.1
    )


def fit_classifier(
    model: PreTrainedModel,
    train_dataset: Any,
    eval_dataset: Any | None,
    training: ClassifierTrainingConfig,
    output_dir: str | os.PathLike,
    data_collator: Callable | None = None,
    callbacks: Sequence[Any] = (),
) -> Trainer:
    """Train ``model`` with ``Trainer``; with an ``eval_dataset``, early-stop on its macro-F1 and keep the best epoch.

    Works unchanged under ``accelerate launch`` / ``torchrun`` (``Trainer`` handles the processes).

    Returns:
        The ``Trainer`` (its ``model`` holds the best weights; ``state.log_history`` the curves).
    """
    with_eval = eval_dataset is not None
    args = training.to_training_arguments(output_dir, with_eval=with_eval)
    all_callbacks = list(callbacks)
    if with_eval and training.early_stopping_patience:
        all_callbacks.append(EarlyStoppingCallback(early_stopping_patience=training.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        compute_metrics=make_compute_metrics(model.config.problem_labels) if with_eval else None,
        callbacks=all_callbacks,
    )
    # Trainer prints every log dict to stdout (through its progress bar, or PrinterCallback without one):
    # send them to the logger instead, keeping the bars.
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(LoggingProgressCallback())
    if training.optimizer == "sgd":
        steps_per_epoch = max(1, len(trainer.get_train_dataloader()) // max(1, args.gradient_accumulation_steps))
        _install_sgd(trainer, training, steps_per_epoch)
    trainer.train()
    return trainer


def best_epoch(trainer: Trainer) -> float:
    """The epoch whose validation macro-F1 was best (the last epoch when there was no validation)."""
    evaluations = [e for e in trainer.state.log_history if "eval_macro_f1" in e]
    if not evaluations:
        return float(trainer.state.epoch or 0.0)
    best = max(evaluations, key=lambda e: e["eval_macro_f1"])  # first maximum: the earliest best epoch
    return float(best["epoch"])


def predict_probabilities(trainer: Trainer, dataset: Any) -> dict[str, np.ndarray]:
    """Class probabilities per problem (softmax of each problem's logits) for every row of ``dataset``."""
    output = trainer.predict(dataset)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    problem_labels = trainer.model.config.problem_labels
    out = {}
    for name, problem_logits in split_logits(np.asarray(logits, dtype=np.float64), problem_labels).items():
        shifted = problem_logits - problem_logits.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted)
        out[name] = probabilities / probabilities.sum(axis=-1, keepdims=True)
    return out
