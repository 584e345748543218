"""Model cards: card data held by every model (filled while it trains) and the templates that render it.

This package imports no model, trainer or recipe: models import it (``save_pretrained`` writes the card),
and :mod:`hf_memotion.hub` publishes the folders it wrote.
"""

from hf_memotion.cards.card_data import CardDataCallback, MemotionCardData, ModelCardMixin
from hf_memotion.cards.rendering import (
    CITATIONS,
    MODEL_ID_PLACEHOLDER,
    base_model_card,
    ensemble_card,
    score_name,
    vise_card,
    write_model_card,
)

__all__ = [
    "CITATIONS",
    "MODEL_ID_PLACEHOLDER",
    "CardDataCallback",
    "MemotionCardData",
    "ModelCardMixin",
    "base_model_card",
    "ensemble_card",
    "score_name",
    "vise_card",
    "write_model_card",
]
