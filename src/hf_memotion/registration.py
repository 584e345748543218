"""Register hf-memotion's classes with transformers' Auto classes (called once on import, idempotent).

After ``import hf_memotion``, the Auto classes resolve ``memotion_text`` (``AutoConfig``, ``AutoModel``,
``AutoModelForSequenceClassification``) and ``memotion_vision`` (``AutoModelForImageClassification``,
``AutoImageProcessor``), ``vise`` (``AutoModel``, ``AutoModelForImageClassification``,
``AutoModelForPreTraining``, ``AutoImageProcessor``) and ``memotion_ensemble`` (``AutoModel``),
``pipeline("meme-emotion")`` is registered, and ``timm.create_model("polynet")`` works. Saved configs also carry an
``auto_map`` (the classes need the ``hf-memotion`` package installed; ``trust_remote_code`` is never
required or defaulted).
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)

from hf_memotion.models.ensemble import MemotionEnsembleConfig, MemotionEnsembleModel
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification, MemotionTextModel
from hf_memotion.models.vision import (
    MemotionImageProcessor,
    MemotionVisionConfig,
    MemotionVisionForImageClassification,
    MemotionVisionModel,
)
from hf_memotion.vise.configuration_vise import ViseConfig
from hf_memotion.vise.modeling_vise import ViseForImageClassification, ViseForPretraining, ViseModel

__all__ = ["register_auto_classes"]

_DONE = False


def register_auto_classes() -> None:
    """Register every config and model class with the Auto classes (safe to call twice)."""
    global _DONE
    if _DONE:
        return
    AutoConfig.register(MemotionTextConfig.model_type, MemotionTextConfig, exist_ok=True)
    AutoModel.register(MemotionTextConfig, MemotionTextModel, exist_ok=True)
    AutoModelForSequenceClassification.register(
        MemotionTextConfig, MemotionTextForSequenceClassification, exist_ok=True
    )
    MemotionTextConfig.register_for_auto_class("AutoConfig")
    MemotionTextModel.register_for_auto_class("AutoModel")
    MemotionTextForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    AutoConfig.register(MemotionVisionConfig.model_type, MemotionVisionConfig, exist_ok=True)
    AutoModel.register(MemotionVisionConfig, MemotionVisionModel, exist_ok=True)
    AutoModelForImageClassification.register(MemotionVisionConfig, MemotionVisionForImageClassification, exist_ok=True)
    AutoImageProcessor.register(
        MemotionVisionConfig,
        image_processor_classes={"torchvision": MemotionImageProcessor, "pil": MemotionImageProcessor},
        exist_ok=True,
    )
    MemotionVisionConfig.register_for_auto_class("AutoConfig")
    MemotionVisionModel.register_for_auto_class("AutoModel")
    MemotionVisionForImageClassification.register_for_auto_class("AutoModelForImageClassification")
    MemotionImageProcessor.register_for_auto_class("AutoImageProcessor")
    AutoConfig.register(ViseConfig.model_type, ViseConfig, exist_ok=True)
    AutoModel.register(ViseConfig, ViseModel, exist_ok=True)
    AutoModelForImageClassification.register(ViseConfig, ViseForImageClassification, exist_ok=True)
    AutoModelForPreTraining.register(ViseConfig, ViseForPretraining, exist_ok=True)
    AutoImageProcessor.register(
        ViseConfig,
        image_processor_classes={"torchvision": MemotionImageProcessor, "pil": MemotionImageProcessor},
        exist_ok=True,
    )
    ViseConfig.register_for_auto_class("AutoConfig")
    ViseModel.register_for_auto_class("AutoModel")
    ViseForImageClassification.register_for_auto_class("AutoModelForImageClassification")
    ViseForPretraining.register_for_auto_class("AutoModelForPreTraining")
    AutoConfig.register(MemotionEnsembleConfig.model_type, MemotionEnsembleConfig, exist_ok=True)
    AutoModel.register(MemotionEnsembleConfig, MemotionEnsembleModel, exist_ok=True)
    from hf_memotion.pipelines import register_pipeline

    register_pipeline()
    _DONE = True
