"""The Hub side of a saved model: its card, publishing a folder, checked downloads, and working without a network."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

__all__ = [
    "HubPublishError",
    "PublishResult",
    "PushSpec",
    "base_model_card",
    "ensemble_card",
    "offline_if_unreachable",
    "push_folder",
    "upload_plan",
    "vise_card",
    "write_model_card",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "base_model_card": "hf_memotion.cards",
        "ensemble_card": "hf_memotion.cards",
        "vise_card": "hf_memotion.cards",
        "write_model_card": "hf_memotion.cards",
        "offline_if_unreachable": "hf_memotion.hub.connectivity",
        "HubPublishError": "hf_memotion.hub.publishing",
        "PublishResult": "hf_memotion.hub.publishing",
        "PushSpec": "hf_memotion.hub.publishing",
        "push_folder": "hf_memotion.hub.publishing",
        "upload_plan": "hf_memotion.hub.publishing",
    },
)

if TYPE_CHECKING:
    from hf_memotion.cards import base_model_card, ensemble_card, vise_card, write_model_card
    from hf_memotion.hub.connectivity import offline_if_unreachable
    from hf_memotion.hub.publishing import HubPublishError, PublishResult, PushSpec, push_folder, upload_plan
