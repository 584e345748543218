"""Training: the spine (MemotionTrainer, its arguments and schedules), folds, cross-validation, the recipes."""

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
