"""Joint image-text base models: an image and a text encoder (CLIP, SigLIP, timm, any transformers), fused, heads."""

from transformers import AutoProcessor

from hf_memotion.models.auto import register_model_family
from hf_memotion.models.multimodal.configuration_memotion_multimodal import (
    FUSIONS,
    TEXT_POOLINGS,
    MemotionMultimodalConfig,
)
from hf_memotion.models.multimodal.modeling_memotion_multimodal import (
    MemotionMultimodalForClassification,
    MemotionMultimodalModel,
    MemotionMultimodalPreTrainedModel,
    fuse,
)
from hf_memotion.models.multimodal.processing_memotion_multimodal import (
    MemotionMultimodalProcessor,
    image_processor_for,
)
from hf_memotion.models.vision import MemotionImageProcessor

# transformers has no Auto class for image-and-text classification: the joint classifier is found through
# AutoModelForSequenceClassification, as the textual members are (its inputs are the text's plus pixel_values)
register_model_family(
    MemotionMultimodalConfig,
    {"AutoModel": MemotionMultimodalModel, "AutoModelForSequenceClassification": MemotionMultimodalForClassification},
    image_processor=MemotionImageProcessor,
)
AutoProcessor.register(MemotionMultimodalConfig, MemotionMultimodalProcessor, exist_ok=True)

__all__ = [
    "FUSIONS",
    "TEXT_POOLINGS",
    "MemotionMultimodalConfig",
    "MemotionMultimodalForClassification",
    "MemotionMultimodalModel",
    "MemotionMultimodalPreTrainedModel",
    "MemotionMultimodalProcessor",
    "fuse",
    "image_processor_for",
]
