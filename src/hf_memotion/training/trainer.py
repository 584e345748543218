"""The training spine: :class:`MemotionTrainer` (the one ``Trainer`` subclass) and the base-model settings.

Every training of the library runs through :class:`MemotionTrainer`: the text and visual base models
(:func:`fit_classifier`), VisE pretraining and VisE fine-tuning. It owns the optimiser (SGD with
momentum, or the stock Adam/AdamW), the schedule (stock, or warm-up then step decay from
:mod:`hf_memotion.training.schedules`), the logging (per-step dicts to the logger, progress bars kept,
extra loss terms averaged over steps and processes) and the model card data (a callback records the
training's settings and metrics on ``model.card_data``, which ``save_pretrained`` renders).

Examples:
    >>> settings = ClassifierTrainingArguments(epochs=3, optimizer="adam_warmup")
    >>> args = settings.to_training_arguments("/tmp/hf_memotion_doc_run", with_eval=True)
    >>> args.max_grad_norm, args.num_train_epochs, args.lr_scheduler_type.value, args.metric_for_best_model
    (5.0, 3, 'linear', 'macro_f1')
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from sklearn.metrics import f1_score
from tqdm.auto import tqdm
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
)
from transformers.utils import logging as transformers_logging

from hf_memotion.cards import CardDataCallback
from hf_memotion.models.heads import split_logits
from hf_memotion.training.arguments import ClassifierTrainingArguments, MemotionTrainingArguments, show_progress
from hf_memotion.training.schedules import StepSchedule, milestone_steps, step_scheduler

__all__ = [
    "DamagedCheckpointError",
    "LoggingProgressCallback",
    "MemotionTrainer",
    "StopAfterEpochs",
    "best_epoch",
    "epoch_scores",
    "fit_classifier",
    "make_compute_metrics",
    "predict_probabilities",
    "show_progress",
]

logger = logging.getLogger(__name__)


class StopAfterEpochs(TrainerCallback):
    """Stop training at the end of epoch ``epochs``, whatever ``num_train_epochs`` the schedule was built for.

    The refit of ``refit_schedule="fold"`` keeps the folds' schedule (warm-up, decay, milestones over all epochs) and
    stops at their median best epoch.
    """

    def __init__(self, epochs: float):
        self.epochs = float(epochs)

    def on_epoch_end(self, args, state, control, **kwargs):
        """Ask the trainer to stop once ``epochs`` epochs are done."""
        if (state.epoch or 0.0) >= self.epochs - 1e-6:
            control.should_training_stop = True
        return control


def progress_label(args: Any) -> str:
    """A short name for a training's progress bar and summary line, from its output folder.

    Examples:
        >>> from types import SimpleNamespace
        >>> run = "outputs/demo/models/text/search/trial_3/folds/fold_0/checkpoints"
        >>> progress_label(SimpleNamespace(output_dir=run))
        'text trial_3 fold_0'
        >>> progress_label(SimpleNamespace(output_dir="outputs/demo/models/text/folds/refit_checkpoints"))
        'text refit'
        >>> progress_label(SimpleNamespace(output_dir="outputs/vise_pretrain_demo/checkpoints"))
        'outputs/vise_pretrain_demo'
    """
    folder = Path(str(getattr(args, "output_dir", "") or "training"))
    parts = [p.removesuffix("_checkpoints") for p in folder.parts if p != "checkpoints"]
    if "models" in parts:  # a recipe's run: the model, its candidate and fold
        named = [p for p in parts[len(parts) - parts[::-1].index("models") :] if p not in ("search", "folds")]
        return " ".join(named) or "training"
    return "/".join(parts[-2:]) or "training"


class LoggingProgressCallback(ProgressCallback):
    """One labelled training bar on the main process; per-log metrics at DEBUG, one summary line at INFO.

    The stock callback draws an unlabelled bar per training and another per evaluation, and prints every log dict
    to stdout. Here the training bar is named after the run (:func:`progress_label`), evaluations inside a training
    draw no bar of their own (a standalone ``evaluate``/``predict`` still does), each log dict goes to the logger at
    DEBUG (``HF_MEMOTION_LOG_LEVEL=DEBUG`` shows them) and the end of training logs one INFO line: steps, epochs and
    the last logged loss and evaluation metrics.
    """

    def __init__(self, max_str_len: int = 100):
        super().__init__(max_str_len)
        self.last: dict[str, Any] = {}  # the training's latest logged values, for its summary line

    def on_train_begin(self, args, state, control, **kwargs):
        """Open the labelled training bar."""
        self.last = {}
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, desc=f"training {progress_label(args)}", dynamic_ncols=True)
        self.current_step = 0

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        """No bar for an evaluation inside a training (the training bar covers it)."""
        if self.training_bar is None:
            super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)
            if self.prediction_bar is not None:
                self.prediction_bar.set_description(f"evaluating {progress_label(args)}", refresh=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Send this log dict to the logger at DEBUG (main process) and keep it for the summary."""
        if state.is_world_process_zero and logs:
            values = {k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()}
            self.last.update(values)
            logger.debug("%s epoch %.2f: %s", progress_label(args), state.epoch or 0.0, values)

    def on_train_end(self, args, state, control, **kwargs):
        """Close the bar, then log the training's summary line (main process)."""
        super().on_train_end(args, state, control, **kwargs)
        if state.is_world_process_zero:
            last = self.last
            shown = {k: v for k, v in last.items() if k in ("loss", "train_loss") or k.startswith("eval_f1")}
            logger.info(
                "%s: %d steps, %.1f epochs in %.0f s; last %s",
                progress_label(args),
                state.global_step,
                state.epoch or 0.0,
                last.get("train_runtime", 0.0),
                shown,
            )


def _not_the_mtime_note(record: logging.LogRecord) -> bool:
    """A log filter dropping transformers' "mtime may not be reliable" warning.

    Short epochs save checkpoints within a second of each other, which it reads as a broken filesystem; it then
    orders them by step number, which is right.
    """
    return "mtime may not be reliable" not in record.getMessage()


def _quiet_checkpoint_ordering() -> None:
    """Filter :func:`_not_the_mtime_note` on transformers' checkpoint-ordering logger (once)."""
    target = logging.getLogger("transformers.trainer_utils")
    if _not_the_mtime_note not in target.filters:
        target.addFilter(_not_the_mtime_note)


def _match_mixed_precision(args: Any) -> None:
    """Let this trainer's precision differ from the last one's in the same process.

    accelerate keeps one ``AcceleratorState`` per process and refuses a second ``Accelerator`` with another
    ``mixed_precision``; a recipe trains many models in one process (e.g. a bf16 text model beside an fp32 visual
    one). The precision part of the state is dropped when it differs; the process group (``PartialState``) stays.
    """
    from accelerate.state import AcceleratorState

    if args is None:
        return
    wanted = "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else "no"
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, wanted):
        AcceleratorState._reset_state(reset_partial_state=False)


class DamagedCheckpointError(RuntimeError):
    """A checkpoint a run resumes from cannot be read; the message names it and says to delete it."""


@contextlib.contextmanager
def _checkpoint_read(checkpoint: str | None, what: str) -> Iterator[None]:
    """Turn a damaged checkpoint file into one line naming the checkpoint and the fix."""
    try:
        yield
    except (pickle.UnpicklingError, EOFError, SafetensorError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedCheckpointError(_damaged(checkpoint, what, err)) from None
    except RuntimeError as err:  # torch.load's own messages for truncated or foreign files
        if not any(sign in str(err) for sign in ("PytorchStreamReader", "weights_only", "zip archive", "pickle")):
            raise
        raise DamagedCheckpointError(_damaged(checkpoint, what, err)) from None


def _damaged(checkpoint: str | None, what: str, err: BaseException) -> str:
    reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return (
        f"the checkpoint {checkpoint} cannot be read ({what}: {type(err).__name__}: {reason}); it is damaged or was "
        f"not written by this run: delete it (rm -r {checkpoint}) and run again to resume from the previous "
        "checkpoint, or from the start"
    )


class MemotionTrainer(Trainer):
    """The library's ``Trainer``: the papers' optimisers and schedules, readable logs, card data on the model.

    Behaves as the stock ``Trainer`` for every stock argument; with :class:`MemotionTrainingArguments` it adds:

    - ``optim="sgd"``: SGD with ``args.momentum`` (the stock SGD takes its momentum from ``optim_args``);
      ``decay_all_parameters``: one parameter group, weight decay on biases and norms too;
    - ``lr_milestones``: linear warm-up over ``args.warmup_steps`` (a fraction when below 1), then
      ``x lr_decay`` at each milestone (epochs, fractions of training or steps);
    - ``loss_terms``: output fields (e.g. VisE's ``comment_loss``) averaged since the last log and over the
      processes, logged beside ``loss``;
    - log dicts go to the logger (progress bars are kept on the main process), not to stdout;
    - a :class:`~hf_memotion.cards.CardDataCallback` fills ``model.card_data`` when the model has one, so the
      model's ``save_pretrained`` writes a card with the training's settings and metrics.

    Examples:
        >>> import torch
        >>> from hf_memotion.training.arguments import build_training_arguments
        >>> model = torch.nn.Linear(2, 2)
        >>> args = build_training_arguments("/tmp/hf_memotion_doc_trainer", batch_size=4, optim="sgd", momentum=0.9,
        ...                                 lr_milestones=[0.5], lr_milestone_unit="fraction", max_steps=10)
        >>> trainer = MemotionTrainer(model=model, args=args)
        >>> trainer.create_optimizer_and_scheduler(num_training_steps=10)
        >>> type(trainer.optimizer).__name__, trainer.optimizer.defaults["momentum"]
        ('SGD', 0.9)
        >>> [round(trainer.lr_scheduler.lr_lambdas[0](s), 3) for s in (0, 4, 5, 9)]
        [1.0, 1.0, 0.1, 0.1]
    """

    def __init__(self, *args: Any, **kwargs: Any):
        _match_mixed_precision(kwargs.get("args", args[1] if len(args) > 1 else None))
        super().__init__(*args, **kwargs)
        # Trainer prints every log dict to stdout (through its progress bar, or PrinterCallback without one):
        # send them to the logger instead, keeping the bars.
        self.remove_callback(PrinterCallback)
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(LoggingProgressCallback())
        if getattr(self.model, "card_data", None) is not None:
            self.add_callback(CardDataCallback(self.model.card_data))
        _quiet_checkpoint_ordering()
        self._terms: dict[str, list[torch.Tensor]] = {name: [] for name in getattr(self.args, "loss_terms", [])}

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Save as the stock trainer does, without a "Writing model shards" bar for every checkpoint."""
        shown = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            super()._save(output_dir, state_dict)
        finally:
            if shown:
                transformers_logging.enable_progress_bar()

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """SGD with momentum for ``optim="sgd"``; one decayed group with ``decay_all_parameters``; else stock."""
        if self.optimizer is not None:
            return self.optimizer
        if not isinstance(self.args, MemotionTrainingArguments):  # stock arguments: the stock optimizer
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        sgd = str(getattr(self.args.optim, "value", self.args.optim)) == "sgd"
        if not sgd and not self.args.decay_all_parameters:
            return super().create_optimizer(model)
        parameters = [p for p in opt_model.parameters() if p.requires_grad]
        if sgd:
            self.optimizer = torch.optim.SGD(
                parameters, lr=self.args.learning_rate, momentum=self.args.momentum, weight_decay=self.args.weight_decay
            )
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(parameters, weight_decay=self.args.weight_decay, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """Warm-up then step decay when ``args.lr_milestones`` is set; the stock scheduler otherwise."""
        milestones = getattr(self.args, "lr_milestones", None)
        if self.lr_scheduler is not None or not milestones:
            return super().create_scheduler(num_training_steps, optimizer)
        unit = self.args.lr_milestone_unit
        steps_per_epoch = self._steps_per_epoch() if unit == "epoch" else 1 if unit == "step" else None
        schedule = StepSchedule(
            total_steps=max(1, num_training_steps),
            warmup_steps=self.args.get_warmup_steps(num_training_steps),
            milestones=milestone_steps(milestones, num_training_steps, steps_per_epoch=steps_per_epoch),
            factor=self.args.lr_decay,
        )
        self.lr_scheduler = step_scheduler(optimizer or self.optimizer, schedule)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # A resumed run reads its own checkpoint; a damaged file there is named with the fix (delete the checkpoint),
    # never torch's advice to load with weights_only=False.
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        with _checkpoint_read(resume_from_checkpoint, "weights"):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        with _checkpoint_read(checkpoint, "optimizer or scheduler state"):
            super()._load_optimizer_and_scheduler(checkpoint)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        with _checkpoint_read(checkpoint, "random-number state"):
            super()._load_rng_state(checkpoint)

    def _load_scaler(self, checkpoint: str | None) -> None:
        with _checkpoint_read(checkpoint, "gradient scaler state"):
            super()._load_scaler(checkpoint)

    def _steps_per_epoch(self) -> int:
        return max(1, len(self.get_train_dataloader()) // max(1, self.args.gradient_accumulation_steps))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The stock loss; the ``loss_terms`` of the outputs are kept for the next log."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            for name, values in self._terms.items():
                value = getattr(outputs, name, None)
                if value is not None:
                    values.append(value.detach())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the mean of each loss term since the last log (over the processes) to a training log."""
        if "loss" in logs:
            for name, values in self._terms.items():
                if values:
                    mean = torch.stack(values).mean()
                    logs[name] = round(float(self.accelerator.reduce(mean, reduction="mean")), 4)
                values.clear()
        super().log(logs, *args, **kwargs)


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


def fit_classifier(
    model: PreTrainedModel,
    train_dataset: Any,
    eval_dataset: Any | None,
    training: ClassifierTrainingArguments,
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
    trainer = MemotionTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        compute_metrics=make_compute_metrics(model.config.problem_labels) if with_eval else None,
        callbacks=all_callbacks,
    )
    trainer.train()
    return trainer


def epoch_scores(log_history: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    """``[[epoch, validation macro-F1], ...]`` of a training's evaluations (a ``Trainer``'s ``log_history``).

    Examples:
        >>> epoch_scores([{"loss": 1.0, "epoch": 0.5}, {"eval_macro_f1": 0.4, "epoch": 1.0}])
        [[1.0, 0.4]]
    """
    return [[float(e["epoch"]), float(e["eval_macro_f1"])] for e in log_history if "eval_macro_f1" in e]


def best_epoch(trainer: Trainer) -> float:
    """The epoch whose validation macro-F1 was best (the last epoch when there was no validation)."""
    scores = epoch_scores(trainer.state.log_history)
    if not scores:
        return float(trainer.state.epoch or 0.0)
    return max(scores, key=lambda e: e[1])[0]  # first maximum: the earliest best epoch


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
