"""Training helpers shared by the text, vision and VisE trainers."""

from hf_memotion.training.folds import class_weights, stratified_folds

__all__ = ["class_weights", "stratified_folds"]
