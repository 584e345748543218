"""The Memotion paper's visual models: any timm architecture with problem heads, PolyNet, ten-crop."""

from hf_memotion.models.auto import register_model_family
from hf_memotion.models.vision.configuration_memotion_vision import MemotionVisionConfig
from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor
from hf_memotion.models.vision.modeling_memotion_vision import (
    MemotionVisionForImageClassification,
    MemotionVisionModel,
    MemotionVisionPreTrainedModel,
)
from hf_memotion.models.vision.polynet import PolyNet, convert_polynet_state_dict

register_model_family(
    MemotionVisionConfig,
    {"AutoModel": MemotionVisionModel, "AutoModelForImageClassification": MemotionVisionForImageClassification},
    image_processor=MemotionImageProcessor,
)

__all__ = [
    "MemotionImageProcessor",
    "MemotionVisionConfig",
    "MemotionVisionForImageClassification",
    "MemotionVisionModel",
    "MemotionVisionPreTrainedModel",
    "PolyNet",
    "convert_polynet_state_dict",
]
