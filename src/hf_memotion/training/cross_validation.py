"""k-fold cross-validation that yields out-of-fold class probabilities: what stacking needs.

Every training row gets probabilities from the one model that did not train on it (proper stacked
generalisation). Early stopping inside a fold uses a stratified slice of that fold's *training*
rows, never the held-out fold, so out-of-fold predictions stay unseen by every decision. Finished
folds are saved (``fold_K/oof.safetensors`` + ``metrics.json``, written atomically) and skipped when
the same command runs again, so a killed run resumes where it stopped.

The driver is model-agnostic: text and vision classifiers both pass a ``model_init`` and a dataset
whose rows carry ``labels``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save
from sklearn.model_selection import train_test_split
from transformers import PreTrainedModel, set_seed

from hf_memotion.distributed import process_state
from hf_memotion.folder_safety import read_bounded
from hf_memotion.hardware import release_memory
from hf_memotion.io_utils import atomic_open, atomic_write_text
from hf_memotion.metrics import memotion_scores
from hf_memotion.training.folds import stratified_folds
from hf_memotion.training.trainer import (
    ClassifierTrainingArguments,
    StopAfterEpochs,
    best_epoch,
    epoch_scores,
    fit_classifier,
    predict_probabilities,
)

__all__ = [
    "CandidatePruned",
    "CrossValidationResult",
    "CrossValidator",
    "FoldMonitor",
    "cross_validate",
    "labels_matrix",
]

logger = logging.getLogger(__name__)


@dataclass
class CrossValidationResult:
    """What k-fold training produced.

    Attributes:
        oof_probabilities: Problem -> ``(n_rows, n_classes)`` probabilities; row i comes from the
            fold model that never saw row i.
        fold_metrics: Per fold: validation macro-F1 per problem and the best epoch.
        best_epochs: Best epoch of each fold (by early-stopping macro-F1).
        oof_scores: Macro-F1 of the out-of-fold predictions per problem (and subtasks when all
            their problems are present).
        model: The model refit on all rows (``None`` when ``refit=False``).
        fold_test_probabilities: Problem -> the mean over the fold models of their probabilities for the test rows
            (when a ``test_dataset`` was given): ``test_time: fold_average``.
    """

    oof_probabilities: dict[str, np.ndarray]
    fold_metrics: list[dict[str, float]]
    best_epochs: list[float]
    oof_scores: dict[str, float]
    model: PreTrainedModel | None = field(default=None, repr=False)
    fold_test_probabilities: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def mean_score(self, problems: Sequence[str]) -> float:
        """The mean out-of-fold macro-F1 over ``problems`` (what a hyperparameter selection maximises)."""
        return sum(self.oof_scores[p] for p in problems) / len(problems)

    @property
    def train_steps(self) -> int:
        """Optimisation steps its folds trained (as their ``metrics.json`` recorded them)."""
        return sum(int(f.get("train_steps", 0)) for f in self.fold_metrics)


class CandidatePruned(Exception):
    """A :class:`FoldMonitor` stopped the candidate: its unfinished fold is dropped, its finished folds kept.

    Examples:
        >>> str(CandidatePruned("stopped in fold 2/5"))
        'stopped in fold 2/5'
    """


class FoldMonitor:
    """Watches a cross-validation fold by fold and epoch by epoch, and may stop it (a pruned selection's hook).

    The default watches and stops nothing. :meth:`callbacks` gives the trainer callbacks of a fold's training (they
    see every epoch's validation macro-F1); :meth:`fold_finished` is called for every fold, trained or reused, with
    its metrics (``epoch_scores`` included); once :attr:`stop` is set the fold in training is dropped and
    :class:`CandidatePruned` raised.

    Examples:
        >>> monitor = FoldMonitor()
        >>> monitor.callbacks(0), monitor.stop
        ([], False)
    """

    stop: bool = False

    def callbacks(self, fold: int) -> list[Any]:
        """Trainer callbacks for fold ``fold``'s training."""
        return []

    def fold_finished(self, fold: int, metrics: Mapping[str, Any]) -> None:
        """Fold ``fold`` is done (``metrics``: its ``metrics.json``); may set :attr:`stop`."""


def labels_matrix(dataset: Any, n_problems: int) -> np.ndarray:
    """The ``labels`` column as an ``(n_rows, n_problems)`` integer array."""
    labels = np.asarray(dataset["labels"], dtype=np.int64)
    return labels[:, None] if labels.ndim == 1 else labels.reshape(len(labels), n_problems)


def _early_stopping_split(indices: np.ndarray, strata: np.ndarray, fraction: float, seed: int):
    try:
        return train_test_split(indices, test_size=fraction, random_state=seed, stratify=strata)
    except ValueError:  # a class too rare to stratify: plain random split
        return train_test_split(indices, test_size=fraction, random_state=seed)


def _save_fold(
    folder: Path,
    probabilities: Mapping[str, np.ndarray],
    indices: np.ndarray,
    metrics: dict,
    test: Mapping[str, np.ndarray] | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"probabilities.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in probabilities.items()}
    tensors.update({f"test.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in (test or {}).items()})
    tensors["indices"] = indices.astype(np.int64)
    with atomic_open(folder / "oof.safetensors", "wb") as handle:
        handle.write(save(tensors))
    atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2))  # written last: marks the fold done


def _load_fold(folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict, dict[str, np.ndarray]] | None:
    if not (folder / "metrics.json").is_file() or not (folder / "oof.safetensors").is_file():
        return None
    try:  # a damaged fold (truncated, replaced, values that are no probabilities) is trained again
        tensors = load_file(folder / "oof.safetensors")
        probabilities = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("probabilities.")}
        test = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("test.")}
        indices = tensors["indices"]
        metrics = json.loads(read_bounded(folder / "metrics.json", "fold metrics"))
        if not isinstance(metrics, dict) or indices.ndim != 1 or (indices < 0).any():
            raise ValueError("unexpected layout")
        for values in (*probabilities.values(), *test.values()):
            if values.ndim != 2 or not np.isfinite(values).all() or (values < 0).any() or (values > 1 + 1e-4).any():
                raise ValueError("values that are not probabilities")
        if any(len(v) != len(indices) for v in probabilities.values()):
            raise ValueError("probabilities and indices of different lengths")
    except (SafetensorError, KeyError, ValueError, OSError) as err:
        logger.warning("%s is damaged (%s): the fold is trained again", folder, str(err).splitlines()[0][:200])
        return None
    return probabilities, indices, metrics, test


class CrossValidator:
    """k-fold training that yields out-of-fold probabilities, resumable fold folders and the refit model.

    Args:
        model_init: Builds a fresh model (same config each call).
        problem_labels: Label names per problem, in the model's order.
        training: Settings of every fit; the refit trains for the median best epoch of the folds (as
            ``training.refit_schedule`` says).
        n_splits: Folds (5 in the paper).
        seed: Fold assignment and early-stopping split seed.
        data_collator: Passed to the trainer (e.g. ``DataCollatorWithPadding`` for text).
        early_stopping_fraction: Share of each fold's training rows held out for early stopping (default:
            ``training.validation_fraction``; 0: none, every fold trains ``epochs`` on all its rows).
        run_key: Identifies the settings (e.g. a hash of model and training settings); a saved fold is reused
            only when its key and its rows match, so changed settings retrain.
        trainer_factory: ``(model, train_rows, stop_rows or None, training, output_dir, data_collator=...) ->
            Trainer``: trains and returns the trainer (default :func:`~hf_memotion.training.fit_classifier`); it is
            also passed ``callbacks=`` for a refit with ``refit_schedule="fold"``.

    Examples:
        >>> import numpy as np
        >>> validator = CrossValidator(lambda: None, {"humour": ["not_funny", "funny"]}, ClassifierTrainingArguments(),
        ...                            n_splits=3)
        >>> [len(held_out) for _, held_out in validator.folds(np.array([0, 1] * 6))]
        [4, 4, 4]
    """

    def __init__(
        self,
        model_init: Callable[[], PreTrainedModel],
        problem_labels: Mapping[str, Sequence[str]],
        training: ClassifierTrainingArguments,
        *,
        n_splits: int = 5,
        seed: int = 0,
        data_collator: Callable | None = None,
        early_stopping_fraction: float | None = None,
        run_key: str = "",
        trainer_factory: Callable[..., Any] | None = None,
    ):
        self.model_init = model_init
        self.problem_labels = dict(problem_labels)
        self.training = training
        self.n_splits = n_splits
        self.seed = seed
        self.data_collator = data_collator
        self.early_stopping_fraction = (
            training.validation_fraction if early_stopping_fraction is None else float(early_stopping_fraction)
        )
        self.run_key = run_key
        self.trainer_factory = trainer_factory

    def folds(self, strata: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ``(training, held-out)`` row indices of every fold (stratified on ``strata``, seeded)."""
        return list(stratified_folds(strata, n_splits=self.n_splits, seed=self.seed))

    def fit(
        self, model: PreTrainedModel, train_rows: Any, stop_rows: Any | None, training, output_dir: Path, **kwargs: Any
    ):
        """Train one model with the trainer factory (early stopping on ``stop_rows`` when given)."""
        factory = self.trainer_factory or fit_classifier
        return factory(model, train_rows, stop_rows, training, output_dir, data_collator=self.data_collator, **kwargs)

    def refit_plan(self, best_epochs: Sequence[float]) -> tuple[ClassifierTrainingArguments, list[Any]]:
        """The refit's settings and callbacks: the folds' median best epoch, schedule as ``refit_schedule`` says."""
        epochs = max(1.0, float(np.round(np.median(best_epochs))))
        if self.training.refit_schedule == "fold" and epochs < float(self.training.epochs):
            return self.training, [StopAfterEpochs(epochs)]  # the folds' schedule, stopped where they peaked
        return dataclasses.replace(self.training, epochs=epochs), []

    def run(
        self,
        dataset: Any,
        output_dir: str | os.PathLike,
        *,
        eval_dataset: Any | None = None,
        labels: np.ndarray | None = None,
        refit: bool = True,
        run_key: str | None = None,
        test_dataset: Any | None = None,
        max_folds: int | None = None,
        monitor: FoldMonitor | None = None,
    ) -> CrossValidationResult:
        """Train one model per fold (finished folds in ``output_dir/fold_K`` are reused), then optionally refit.

        Args:
            dataset: Model-ready rows with a ``labels`` column (class id, or one per problem).
            output_dir: Fold results and Trainer checkpoints go here.
            eval_dataset: The same rows as ``dataset`` prepared for evaluation (e.g. without random augmentation,
                with ten-crop); used for early stopping and the out-of-fold predictions. Default: ``dataset``.
            labels: The rows' class ids, ``(n_rows, n_problems)``; default: read the ``labels`` column (pass them
                for datasets whose labels come from an on-the-fly transform).
            refit: Train the final model on all rows.
            run_key: The key of this run's settings (default: the validator's); saved folds are reused under it.
            test_dataset: Model-ready test rows: every fold model predicts them before it is freed, and the result
                holds their mean (``fold_test_probabilities``).
            max_folds: Train only the first ``max_folds`` folds (a rung of a pruned selection): the out-of-fold
                probabilities of the other rows stay ``NaN``, the scores are those of the folds' rows, and there
                is no refit.
            monitor: Watches every fold and epoch and may stop the run (:class:`FoldMonitor`): raises
                :class:`CandidatePruned`.

        Raises:
            CandidatePruned: ``monitor`` stopped the run; the folds finished before are saved.
        """
        run_key = self.run_key if run_key is None else run_key
        partial = max_folds is not None and int(max_folds) < self.n_splits
        if partial and refit:
            raise ValueError("a run of the first folds only (max_folds) has no refit: pass refit=False")
        monitor = monitor or FoldMonitor()
        output = Path(output_dir)
        state = process_state()
        training = self.training
        eval_rows = dataset if eval_dataset is None else eval_dataset
        if len(eval_rows) != len(dataset):
            raise ValueError(
                f"eval_dataset has {len(eval_rows)} rows but dataset has {len(dataset)}; they must be the same rows"
            )
        names = list(self.problem_labels)
        labels = labels_matrix(dataset, len(names)) if labels is None else np.asarray(labels).reshape(len(dataset), -1)
        strata = labels[:, 0]
        oof = {name: np.full((len(labels), len(self.problem_labels[name])), np.nan) for name in names}
        fold_metrics, epochs, fold_tests = [], [], []
        n_test = None if test_dataset is None else len(test_dataset)
        folds = self.folds(strata)[: int(max_folds) if partial else None]
        for k, (train_idx, val_idx) in enumerate(folds):
            folder = output / f"fold_{k}"
            saved = _load_fold(folder)
            if (
                saved is not None
                and saved[2].get("run_key") == run_key
                and np.array_equal(np.sort(saved[1]), np.sort(val_idx))
                and (
                    n_test is None or (set(saved[3]) == set(names) and all(len(v) == n_test for v in saved[3].values()))
                )
            ):
                logger.info("fold %d/%d already done in %s: reusing it", k + 1, self.n_splits, folder)
                probabilities, indices, metrics, test = saved
            else:
                if self.early_stopping_fraction > 0:
                    fit_idx, stop_idx = _early_stopping_split(
                        train_idx, strata[train_idx], self.early_stopping_fraction, self.seed + k
                    )
                    stop_rows = eval_rows.select(np.sort(stop_idx))
                else:  # no epoch selection: the fold trains all its rows for the configured epochs
                    fit_idx, stop_rows = train_idx, None
                set_seed(training.seed + k)  # the fresh model's initial weights depend on the fold only
                callbacks = monitor.callbacks(k)
                extra = {"callbacks": callbacks} if callbacks else {}
                trainer = self.fit(
                    self.model_init(),
                    dataset.select(np.sort(fit_idx)),
                    stop_rows,
                    training,
                    folder / "checkpoints",
                    **extra,
                )
                if monitor.stop:  # pruned during the fold: the fold is dropped, the finished ones stay
                    del trainer
                    release_memory()
                    state.wait_for_everyone()
                    if state.is_main_process:
                        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
                    raise CandidatePruned(f"stopped in fold {k + 1}/{self.n_splits}")
                indices = np.asarray(val_idx)
                probabilities = predict_probabilities(trainer, eval_rows.select(indices))
                test = predict_probabilities(trainer, test_dataset) if test_dataset is not None else {}
                held_out = memotion_scores(
                    {n: p.argmax(-1) for n, p in probabilities.items()},
                    {n: labels[indices, j] for j, n in enumerate(names)},
                )
                metrics = {"fold": k, "run_key": run_key, "best_epoch": best_epoch(trainer)}
                metrics.update({f"f1_{n}": held_out[n] for n in names})
                metrics["train_steps"] = int(trainer.state.global_step)
                metrics["epoch_scores"] = epoch_scores(trainer.state.log_history)
                state.wait_for_everyone()  # every process is done with the fold's checkpoints
                if state.is_main_process:
                    _save_fold(folder, probabilities, indices, metrics, test)
                    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
                state.wait_for_everyone()
                del trainer
                release_memory()  # a fold's model and optimizer state leave the device before the next fold
            for name in names:
                oof[name][indices] = probabilities[name]
            monitor.fold_finished(k, metrics)
            if monitor.stop:
                raise CandidatePruned(f"stopped after fold {k + 1}/{self.n_splits}")
            fold_metrics.append(metrics)
            epochs.append(float(metrics["best_epoch"]))
            fold_tests.append(test)
        missing = [name for name, p in oof.items() if np.isnan(p).any()]
        if missing and not partial:
            raise RuntimeError(
                f"out-of-fold probabilities are missing rows for {missing}: the folds did not cover the data"
            )
        covered = np.sort(np.concatenate([held for _, held in folds]))
        oof_scores = memotion_scores(
            {n: oof[n][covered].argmax(-1) for n in names}, {n: labels[covered, j] for j, n in enumerate(names)}
        )
        fold_test = None
        if test_dataset is not None:
            fold_test = {n: np.mean([t[n] for t in fold_tests], axis=0).astype(np.float64) for n in names}
        model = None
        if refit:
            settings, callbacks = self.refit_plan(epochs)
            set_seed(training.seed + self.n_splits)
            extra = {"callbacks": callbacks} if callbacks else {}  # a factory without callbacks still serves the rest
            trainer = self.fit(self.model_init(), dataset, None, settings, output / "refit_checkpoints", **extra)
            model = trainer.model
            del trainer  # the optimizer state goes; the caller decides how long the model stays
            release_memory()
            state.wait_for_everyone()
            if state.is_main_process:
                shutil.rmtree(output / "refit_checkpoints", ignore_errors=True)
        return CrossValidationResult(oof, fold_metrics, epochs, oof_scores, model, fold_test)


def cross_validate(
    dataset: Any,
    model_init: Callable[[], PreTrainedModel],
    problem_labels: Mapping[str, Sequence[str]],
    training: ClassifierTrainingArguments,
    output_dir: str | os.PathLike,
    *,
    n_splits: int = 5,
    seed: int = 0,
    data_collator: Callable | None = None,
    early_stopping_fraction: float | None = None,
    refit: bool = True,
    run_key: str = "",
    eval_dataset: Any | None = None,
    labels: np.ndarray | None = None,
) -> CrossValidationResult:
    """:class:`CrossValidator` in one call: one model per fold, out-of-fold probabilities, optional refit.

    Args:
        dataset: Model-ready rows with a ``labels`` column (class id, or one per problem).
        model_init: Builds a fresh model (same config each call).
        problem_labels: Label names per problem, in the model's order.
        training: Settings for every fit; the refit trains for the median best epoch of the folds.
        output_dir: Fold results and Trainer checkpoints go here; finished folds are reused.
        n_splits: Folds (5 in the paper).
        seed: Fold assignment and early-stopping split seed.
        data_collator: Passed to ``Trainer`` (e.g. ``DataCollatorWithPadding`` for text).
        early_stopping_fraction: Share of each fold's training rows held out for early stopping (default:
            ``training.validation_fraction``).
        refit: Train the final model on all rows.
        eval_dataset: The same rows as ``dataset`` prepared for evaluation (e.g. without random
            augmentation, with ten-crop); used for early stopping and the out-of-fold predictions.
            Default: ``dataset``.
        labels: The rows' class ids, ``(n_rows, n_problems)``; default: read the ``labels`` column
            (pass them for datasets whose labels come from an on-the-fly transform).
        run_key: Identifies the settings (e.g. a hash of model and training settings); a saved fold
            is reused only when its key and its rows match, so changed settings retrain.

    Returns:
        A :class:`CrossValidationResult`.
    """
    validator = CrossValidator(
        model_init,
        problem_labels,
        training,
        n_splits=n_splits,
        seed=seed,
        data_collator=data_collator,
        early_stopping_fraction=early_stopping_fraction,
        run_key=run_key,
    )
    return validator.run(dataset, output_dir, eval_dataset=eval_dataset, labels=labels, refit=refit)
