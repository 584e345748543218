"""One base-model run, whatever the modality: k-fold out-of-fold probabilities, refit, test scores, files.

The text and vision recipes prepare their data and a ``model_init``; this module does the rest the
same way for both, so the ensemble sees one layout per base model::

    output_dir/
      folds/fold_K/{oof.safetensors, metrics.json}   finished folds (reused by a repeated run)
      model/                                          refit model + tokenizer or image processor
      oof_probabilities.safetensors                   problem -> (n_train, n_classes)
      test_probabilities.safetensors                  problem -> (n_test, n_classes), when scored: the refit model's,
                                                      or the mean of the fold models' (test_time="fold_average")
      refit_test_probabilities.safetensors            with test_time="fold_average" and a refit: the refit model's
                                                      (the single model Table 7 scores, whatever the stacker reads)
      metrics.json                                    settings, out-of-fold and test scores, folds

A run that already finished with the same settings (``metrics.json`` holds their key) is loaded,
not trained again; an unfinished one resumes from its finished folds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from hf_memotion.distributed import process_state
from hf_memotion.folder_safety import read_bounded
from hf_memotion.hardware import release_memory
from hf_memotion.io_utils import atomic_open, atomic_write_text, check_run_folder, staged_folder
from hf_memotion.metrics import memotion_scores
from hf_memotion.training.cross_validation import CrossValidationResult, CrossValidator, FoldMonitor
from hf_memotion.training.trainer import MemotionTrainer, predict_probabilities

__all__ = [
    "ClassifierRunResult",
    "MemberRun",
    "as_splits",
    "data_provenance",
    "load_finished_run",
    "print_run_results",
    "run_classifier",
    "saved_model_folders",
    "settings_key",
]

logger = logging.getLogger(__name__)


@dataclass
class MemberRun:
    """How one base model's run goes, beside what it trains: folds, seed, refit, which test probabilities...

    Attributes:
        n_splits: Folds.
        seed: Seed of folds, the early-stopping split and training.
        test_time: The test split's probabilities: ``"refit"`` (the refit model's) or ``"fold_average"`` (the mean
            of the fold models', each predicting the test rows before it is freed: the models the stacker's
            out-of-fold probabilities came from). Needs no refit.
        refit: Refit on all rows, save the model and score the test split (``False``: the folds only, what a
            search candidate runs).
        keep_model: Return the refit model in the result. ``False`` (what the ensemble recipe passes) frees it once
            it is saved, so a run of many base models holds at most one model at a time.
        budget_folds: A pruned selection's short budget: the first ``budget_folds`` folds only, no refit; the scores
            are those of the folds' rows, no probabilities are written. Part of the run's key.
        card_data: More fields for the refit model's card and ``metrics.json`` (e.g. the search that chose its
            settings); not part of the run's key.
        monitor: Watches the folds and may prune the run (a pruned Optuna study's reporter); not part of the key.

    Examples:
        >>> MemberRun(n_splits=3).budget, MemberRun(refit=False, budget_folds=1).budget
        ({}, {'folds': 1})
    """

    n_splits: int = 5
    seed: int = 0
    test_time: Literal["refit", "fold_average"] = "refit"
    refit: bool = True
    keep_model: bool = True
    budget_folds: int | None = None
    card_data: dict[str, Any] | None = None
    monitor: FoldMonitor | None = None

    def __post_init__(self) -> None:
        if self.test_time not in ("refit", "fold_average"):
            raise ValueError(f"test_time must be 'refit' or 'fold_average', got {self.test_time!r}")
        if self.budget_folds is not None and self.refit:
            raise ValueError("a run on a short budget has no refit: pass refit=False")

    @property
    def budget(self) -> dict[str, int]:
        """The short budget as ``metrics.json`` records it (``{}``: every fold)."""
        return {"folds": int(self.budget_folds)} if self.budget_folds is not None else {}


@dataclass
class ClassifierRunResult(CrossValidationResult):
    """:class:`CrossValidationResult` plus the preprocessor, the run folder and held-out test scores."""

    preprocessor: Any = field(default=None, repr=False)
    output_dir: Path | None = None
    test_scores: dict[str, float] | None = None
    test_probabilities: dict[str, np.ndarray] | None = field(default=None, repr=False)
    refit_test_probabilities: dict[str, np.ndarray] | None = field(default=None, repr=False)
    refit_test_scores: dict[str, float] | None = None

    @property
    def single_model_probabilities(self) -> dict[str, np.ndarray] | None:
        """The test probabilities of the model as one model: the refit model's where there is one."""
        return self.refit_test_probabilities if self.refit_test_probabilities is not None else self.test_probabilities


def as_splits(data: datasets.DatasetDict | datasets.Dataset) -> datasets.DatasetDict:
    """A ``DatasetDict`` with a ``train`` split (a lone dataset becomes ``train``)."""
    splits = data if isinstance(data, datasets.DatasetDict) else datasets.DatasetDict({"train": data})
    if "train" not in splits:
        raise ValueError(f"the data needs a 'train' split; it has {list(splits)}")
    return splits


def data_provenance(dataset: datasets.Dataset) -> dict[str, str | None]:
    """Where a dataset came from, as :func:`hf_memotion.data.load_memotion` recorded it in ``info``."""
    return {"name": dataset.info.dataset_name, "description": dataset.info.description or None}


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short stable hash of a run's settings (finished folds are reused only under the same key)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_probabilities(path: Path, probabilities: Mapping[str, np.ndarray]) -> None:
    """Write probabilities per problem as safetensors, atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in probabilities.items()}))


def load_finished_run(
    output: str | os.PathLike,
    key: str | None = None,
    refit: bool | None = None,
    preprocessor: Any = None,
    load_model: Callable[[Path], Any] | None = None,
    test_time: str | None = None,
) -> ClassifierRunResult | None:
    """The saved result of a run that finished (with the same settings, refit and test time when given), or ``None``.

    ``load_model`` reads the refit model back from its folder (its family's loader); without it the result holds
    the probabilities and scores only.

    A restarted job skips a finished run; the ensemble recipe reads the results of jobs that ran elsewhere. A
    damaged run (unreadable metrics or probabilities) counts as unfinished: it is trained again (the log says so).
    """
    output = Path(output)
    metrics_file = output / "metrics.json"
    if not metrics_file.is_file():
        return None
    try:
        return _load_run(output, metrics_file, key, refit, preprocessor, load_model, test_time)
    except (SafetensorError, KeyError, TypeError, ValueError, OSError) as err:
        logger.warning("%s is damaged (%s): the run is trained again", output, str(err).splitlines()[0][:200])
        return None


def _load_run(
    output: Path,
    metrics_file: Path,
    key: str | None,
    refit: bool | None,
    preprocessor: Any,
    load_model: Callable[[Path], Any] | None,
    test_time: str | None,
) -> ClassifierRunResult | None:
    metrics = json.loads(read_bounded(metrics_file, "run metrics"))
    if key is not None and metrics.get("run_key") != key:
        return None
    if refit is not None and bool(metrics.get("refit")) != refit:
        return None
    if test_time is not None and metrics.get("test_time", "refit") != test_time:
        return None
    refit = bool(metrics.get("refit"))
    # a run on a short budget (a pruned selection's rung) covers some folds only: its scores, no probabilities
    oof = {} if metrics.get("budget") else load_file(output / "oof_probabilities.safetensors")
    test_file = output / "test_probabilities.safetensors"
    refit_file = output / "refit_test_probabilities.safetensors"
    for values in oof.values():
        if values.ndim != 2 or not np.isfinite(values).all():
            raise ValueError("out-of-fold probabilities that are not finite rows")
    model = load_model(output / "model") if refit and load_model is not None else None
    folds = metrics.get("fold_metrics", [])
    return ClassifierRunResult(
        oof_probabilities={k: v.astype(np.float64) for k, v in oof.items()},
        fold_metrics=folds,
        best_epochs=[float(f["best_epoch"]) for f in folds],
        oof_scores=metrics["oof_scores"],
        model=model,
        preprocessor=preprocessor,
        output_dir=output,
        test_scores=metrics.get("test_scores"),
        test_probabilities=(
            {k: v.astype(np.float64) for k, v in load_file(test_file).items()} if test_file.is_file() else None
        ),
        refit_test_probabilities=(
            {k: v.astype(np.float64) for k, v in load_file(refit_file).items()} if refit_file.is_file() else None
        ),
        refit_test_scores=metrics.get("refit_test_scores"),
    )


def run_classifier(
    validator: CrossValidator,
    *,
    train_dataset: Any,
    output_dir: str | os.PathLike,
    settings: Mapping[str, Any],
    preprocessor: Any,
    eval_dataset: Any | None = None,
    test_dataset: Any | None = None,
    test_labels: Mapping[str, Sequence[int]] | None = None,
    train_labels: np.ndarray | None = None,
    run: MemberRun | None = None,
    load_model: Callable[[Path], Any] | None = None,
) -> ClassifierRunResult:
    """Cross-validate, refit, score the test split and write the run folder (main process only).

    Args:
        validator: How to train (model, problems, training settings, folds, seed, collator).
        train_dataset: Model-ready training rows with ``labels`` (training transforms).
        output_dir: Run folder.
        settings: Everything that defines the run (hashed into the fold-reuse key, saved in metrics.json).
        preprocessor: Tokenizer or image processor, saved beside the model.
        eval_dataset: The training rows with evaluation transforms (default: ``train_dataset``).
        test_dataset: Model-ready test rows, scored after the refit.
        test_labels: Gold test labels per problem.
        train_labels: ``(n_rows, n_problems)`` class ids, for datasets whose ``labels`` come from a transform.
        run: Folds, seed, refit, test time, budget, card data and monitor (:class:`MemberRun`); the validator
            holds the folds and seed it trains with. A budget is part of the run's key: pass it in ``settings`` too.
        load_model: Reads a finished run's refit model back (its family's loader), when ``run.keep_model``.
    """
    run = run or MemberRun()
    refit, keep_model, test_time, monitor = run.refit, run.keep_model, run.test_time, run.monitor
    card_data, budget = run.card_data, run.budget
    output = Path(output_dir)
    check_run_folder(output, ("metrics.json", "folds", "model", "oof_probabilities.safetensors"), "a training run")
    key = settings_key(settings)
    loader = load_model if keep_model else None
    finished = load_finished_run(output, key, refit, preprocessor, load_model=loader, test_time=test_time)
    if finished is not None:
        logger.info("%s already finished with these settings: reusing it", output)
        return finished
    fold_average = test_time == "fold_average" and test_dataset is not None and test_labels is not None
    cv = validator.run(
        train_dataset,
        output / "folds",
        eval_dataset=eval_dataset,
        labels=train_labels,
        refit=refit,
        run_key=key,
        test_dataset=test_dataset if fold_average and not budget else None,
        max_folds=budget.get("folds"),
        monitor=monitor,
    )
    result = ClassifierRunResult(**vars(cv), preprocessor=preprocessor, output_dir=output)
    refit_probabilities = None
    if refit and test_dataset is not None and test_labels is not None:
        args = validator.training.to_training_arguments(output / "predict", with_eval=False)
        predictor = MemotionTrainer(model=cv.model, args=args, data_collator=validator.data_collator)
        refit_probabilities = predict_probabilities(predictor, test_dataset)
        del predictor
    if fold_average:
        result.test_probabilities = cv.fold_test_probabilities
        result.refit_test_probabilities = refit_probabilities  # the single model, scored apart
    else:
        result.test_probabilities = refit_probabilities
    if result.test_probabilities is not None:
        result.test_scores = memotion_scores(
            {p: v.argmax(-1) for p, v in result.test_probabilities.items()}, dict(test_labels)
        )
    if result.refit_test_probabilities is not None:
        result.refit_test_scores = memotion_scores(
            {p: v.argmax(-1) for p, v in result.refit_test_probabilities.items()}, dict(test_labels)
        )
    state = process_state()
    if state.is_main_process:  # under accelerate launch, one process writes the files
        if not budget:
            save_probabilities(output / "oof_probabilities.safetensors", cv.oof_probabilities)
        if refit:
            cv.model.card_data.name = output.name
            cv.model.card_data.update(
                **settings,
                **dict(card_data or {}),
                oof_scores=cv.oof_scores,
                test_scores=result.test_scores,
                test_time=test_time,
            )
            # written beside, then moved into place: a killed run leaves no half-written model, and the new files are
            # new inodes, so an ensemble folder hard-linked to the previous ones keeps them
            with staged_folder(output / "model", owned=_saved_model_entries, what="a run's model") as staging:
                cv.model.save_pretrained(staging)  # writes the card (README.md) from the model's card data
                preprocessor.save_pretrained(staging)
        if result.test_probabilities is not None:
            save_probabilities(output / "test_probabilities.safetensors", result.test_probabilities)
        if result.refit_test_probabilities is not None:
            save_probabilities(output / "refit_test_probabilities.safetensors", result.refit_test_probabilities)
        report = {
            **settings,
            "run_key": key,
            "refit": refit,
            "test_time": test_time,
            **({"budget": budget} if budget else {}),
            **dict(card_data or {}),
            "oof_scores": cv.oof_scores,
            "test_scores": result.test_scores,
            **({"refit_test_scores": result.refit_test_scores} if result.refit_test_scores is not None else {}),
            "fold_metrics": cv.fold_metrics,
        }
        atomic_write_text(output / "metrics.json", json.dumps(report, indent=2, default=str))
    state.wait_for_everyone()
    if not keep_model:
        cv.model = result.model = None
        release_memory()
    return result


def _saved_model_entries(folder: Path) -> list[str] | None:
    """What a run's ``model/`` folder holds of a saved model (its model files; a note of the user's is not one)."""
    from fnmatch import fnmatch

    from hf_memotion.hub.snapshots import MODEL_FILE_PATTERNS

    if not (folder / "config.json").is_file():
        return None
    return [p.name for p in folder.iterdir() if p.is_file() and any(fnmatch(p.name, m) for m in MODEL_FILE_PATTERNS)]


def print_run_results(results: Mapping[str, ClassifierRunResult], spec: Any = None) -> None:
    """Print where each model was saved and its out-of-fold and test scores (what the base-model scripts show)."""
    for name, result in results.items():
        print(f"[{name}] saved to {result.output_dir / 'model'}")
        rows = [("out-of-fold", result.oof_scores)] + ([("test", result.test_scores)] if result.test_scores else [])
        for label, scores in rows:
            print(f"  {label:<12} " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))


def saved_model_folders(results: Mapping[str, ClassifierRunResult], spec: Any = None) -> dict[str, Path]:
    """``{name: model folder}`` of a base-model run (what ``push_to_hub:`` publishes)."""
    return {name: result.output_dir / "model" for name, result in results.items()}
