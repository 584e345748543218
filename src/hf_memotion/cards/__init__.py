"""Model cards: card data held by every model (filled while it trains) and the templates that render it.

This package imports no model, trainer or recipe: models import it (``save_pretrained`` writes the card),
and :mod:`hf_memotion.hub` publishes the folders it wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CardDataCallback": "hf_memotion.cards.card_data",
        "MemotionCardData": "hf_memotion.cards.card_data",
        "ModelCardMixin": "hf_memotion.cards.card_data",
        "CITATIONS": "hf_memotion.cards.rendering",
        "MODEL_ID_PLACEHOLDER": "hf_memotion.cards.rendering",
        "base_model_card": "hf_memotion.cards.rendering",
        "ensemble_card": "hf_memotion.cards.rendering",
        "score_name": "hf_memotion.cards.rendering",
        "vise_card": "hf_memotion.cards.rendering",
        "write_model_card": "hf_memotion.cards.rendering",
    },
)

if TYPE_CHECKING:
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
