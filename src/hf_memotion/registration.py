"""Register hf-memotion's classes with transformers' Auto classes (called once on import, idempotent).

After ``import hf_memotion``, ``AutoConfig``, ``AutoModel`` and ``AutoModelForSequenceClassification``
resolve ``model_type="memotion_text"``; saved configs also carry an ``auto_map`` (the classes need
the ``hf-memotion`` package installed; ``trust_remote_code`` is never required or defaulted).
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification, MemotionTextModel

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
    _DONE = True
