"""The Memotion paper's textual models: any transformers backbone + BiLSTM + attention + FFN heads."""

from hf_memotion.models.auto import register_model_family
from hf_memotion.models.text.configuration_memotion_text import MemotionTextConfig, default_pooling
from hf_memotion.models.text.modeling_memotion_text import (
    MemotionTextForSequenceClassification,
    MemotionTextModel,
    MemotionTextPreTrainedModel,
    pool_sequence,
)

register_model_family(
    MemotionTextConfig,
    {"AutoModel": MemotionTextModel, "AutoModelForSequenceClassification": MemotionTextForSequenceClassification},
)

__all__ = [
    "MemotionTextConfig",
    "MemotionTextForSequenceClassification",
    "MemotionTextModel",
    "MemotionTextPreTrainedModel",
    "default_pooling",
    "pool_sequence",
]
