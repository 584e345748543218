"""Training: class weights and folds, the Trainer settings, k-fold out-of-fold driver, text recipe."""

from hf_memotion.training.cross_validation import CrossValidationResult, cross_validate
from hf_memotion.training.folds import class_weights, stratified_folds
from hf_memotion.training.text import TextClassifierResult, train_text_classifier
from hf_memotion.training.trainer import ClassifierTrainingConfig, fit_classifier, predict_probabilities

__all__ = [
    "ClassifierTrainingConfig",
    "CrossValidationResult",
    "TextClassifierResult",
    "class_weights",
    "cross_validate",
    "fit_classifier",
    "predict_probabilities",
    "stratified_folds",
    "train_text_classifier",
]
