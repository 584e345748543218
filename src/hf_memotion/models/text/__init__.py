"""The Memotion paper's textual models: any transformers backbone + BiLSTM + attention + FFN heads."""

from hf_memotion.models.text.configuration_memotion_text import MemotionTextConfig, default_pooling
from hf_memotion.models.text.modeling_memotion_text import (
    MemotionTextForSequenceClassification,
    MemotionTextModel,
    MemotionTextPreTrainedModel,
    pool_sequence,
)

__all__ = [
    "MemotionTextConfig",
    "MemotionTextForSequenceClassification",
    "MemotionTextModel",
    "MemotionTextPreTrainedModel",
    "default_pooling",
    "pool_sequence",
]
