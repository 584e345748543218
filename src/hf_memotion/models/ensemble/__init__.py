"""The modality ensemble: stacked meta-estimators over independently trained text and vision models."""

from hf_memotion.models.ensemble.modeling_memotion_ensemble import (
    MemotionEnsembleConfig,
    MemotionEnsembleModel,
    UnsafeModelFolderError,
)
from hf_memotion.models.ensemble.stacking import META_METHODS, ProblemStacker, fit_stackers

__all__ = [
    "META_METHODS",
    "MemotionEnsembleConfig",
    "MemotionEnsembleModel",
    "ProblemStacker",
    "UnsafeModelFolderError",
    "fit_stackers",
]
