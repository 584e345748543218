"""Training: the spine every training runs on, folds, cross-validation, one base model's run, a recipe's jobs.

The spine is the one ``Trainer`` subclass, its arguments and schedules; the recipes are in :mod:`hf_memotion.recipe`,
each family's training in :mod:`hf_memotion.families`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

__all__ = [
    "ClassifierRunResult",
    "ClassifierTrainingArguments",
    "CrossValidationResult",
    "CrossValidator",
    "MemberRun",
    "MemotionTrainer",
    "MemotionTrainingArguments",
    "StepSchedule",
    "VisionTrainingArguments",
    "build_training_arguments",
    "class_weights",
    "cross_validate",
    "fit_classifier",
    "predict_probabilities",
    "stratified_folds",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ClassifierTrainingArguments": "hf_memotion.training.arguments",
        "MemotionTrainingArguments": "hf_memotion.training.arguments",
        "VisionTrainingArguments": "hf_memotion.training.arguments",
        "build_training_arguments": "hf_memotion.training.arguments",
        "CrossValidationResult": "hf_memotion.training.cross_validation",
        "CrossValidator": "hf_memotion.training.cross_validation",
        "cross_validate": "hf_memotion.training.cross_validation",
        "class_weights": "hf_memotion.training.folds",
        "stratified_folds": "hf_memotion.training.folds",
        "ClassifierRunResult": "hf_memotion.training.runs",
        "MemberRun": "hf_memotion.training.runs",
        "StepSchedule": "hf_memotion.training.schedules",
        "MemotionTrainer": "hf_memotion.training.trainer",
        "fit_classifier": "hf_memotion.training.trainer",
        "predict_probabilities": "hf_memotion.training.trainer",
    },
)

if TYPE_CHECKING:
    from hf_memotion.training.arguments import (
        ClassifierTrainingArguments,
        MemotionTrainingArguments,
        VisionTrainingArguments,
        build_training_arguments,
    )
    from hf_memotion.training.cross_validation import CrossValidationResult, CrossValidator, cross_validate
    from hf_memotion.training.folds import class_weights, stratified_folds
    from hf_memotion.training.runs import ClassifierRunResult, MemberRun
    from hf_memotion.training.schedules import StepSchedule
    from hf_memotion.training.trainer import MemotionTrainer, fit_classifier, predict_probabilities
