"""Training: the spine (MemotionTrainer, its arguments and schedules), folds, cross-validation, the recipes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

__all__ = [
    "PAPER_VISION_TRAINING",
    "ClassifierRunResult",
    "ClassifierTrainingArguments",
    "CrossValidationResult",
    "CrossValidator",
    "MemotionTrainer",
    "MemotionTrainingArguments",
    "StepSchedule",
    "TextClassifierResult",
    "build_training_arguments",
    "class_weights",
    "cross_validate",
    "fit_classifier",
    "predict_probabilities",
    "stratified_folds",
    "train_text_classifier",
    "train_vision_classifier",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MemotionTrainingArguments": "hf_memotion.training.arguments",
        "build_training_arguments": "hf_memotion.training.arguments",
        "CrossValidationResult": "hf_memotion.training.cross_validation",
        "CrossValidator": "hf_memotion.training.cross_validation",
        "cross_validate": "hf_memotion.training.cross_validation",
        "class_weights": "hf_memotion.training.folds",
        "stratified_folds": "hf_memotion.training.folds",
        "ClassifierRunResult": "hf_memotion.training.runs",
        "StepSchedule": "hf_memotion.training.schedules",
        "TextClassifierResult": "hf_memotion.training.text",
        "train_text_classifier": "hf_memotion.training.text",
        "ClassifierTrainingArguments": "hf_memotion.training.trainer",
        "MemotionTrainer": "hf_memotion.training.trainer",
        "fit_classifier": "hf_memotion.training.trainer",
        "predict_probabilities": "hf_memotion.training.trainer",
        "PAPER_VISION_TRAINING": "hf_memotion.training.vision",
        "train_vision_classifier": "hf_memotion.training.vision",
    },
)

if TYPE_CHECKING:
    from hf_memotion.training.arguments import MemotionTrainingArguments, build_training_arguments
    from hf_memotion.training.cross_validation import CrossValidationResult, CrossValidator, cross_validate
    from hf_memotion.training.folds import class_weights, stratified_folds
    from hf_memotion.training.runs import ClassifierRunResult
    from hf_memotion.training.schedules import StepSchedule
    from hf_memotion.training.text import TextClassifierResult, train_text_classifier
    from hf_memotion.training.trainer import (
        ClassifierTrainingArguments,
        MemotionTrainer,
        fit_classifier,
        predict_probabilities,
    )
    from hf_memotion.training.vision import PAPER_VISION_TRAINING, train_vision_classifier
