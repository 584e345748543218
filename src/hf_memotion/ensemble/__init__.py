"""The modality ensemble: stacked meta-estimators over independently trained text and vision models."""

from transformers import AutoConfig, AutoModel

from hf_memotion.ensemble.configuration_memotion_ensemble import MemotionEnsembleConfig
from hf_memotion.ensemble.modeling_memotion_ensemble import MemotionEnsembleModel, UnsafeModelFolderError
from hf_memotion.ensemble.processing_memotion_ensemble import MemeProcessor
from hf_memotion.ensemble.stacking import (
    META_METHODS,
    ProblemStacker,
    combine_stackers,
    fit_stackers,
    with_aliases,
)

# The ensemble's config carries no auto_map: it is loaded by this package's pipeline or AutoModel after import.
AutoConfig.register(MemotionEnsembleConfig.model_type, MemotionEnsembleConfig, exist_ok=True)
AutoModel.register(MemotionEnsembleConfig, MemotionEnsembleModel, exist_ok=True)

__all__ = [
    "META_METHODS",
    "MemeProcessor",
    "MemotionEnsembleConfig",
    "MemotionEnsembleModel",
    "ProblemStacker",
    "UnsafeModelFolderError",
    "combine_stackers",
    "fit_stackers",
    "with_aliases",
]
