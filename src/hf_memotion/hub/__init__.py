"""The Hub side of a saved model: its card (``README.md``) and publishing a folder."""

from hf_memotion.cards import base_model_card, ensemble_card, vise_card, write_model_card
from hf_memotion.hub.publishing import HubPublishError, PublishResult, PushSpec, push_folder, upload_plan

__all__ = [
    "HubPublishError",
    "PublishResult",
    "PushSpec",
    "base_model_card",
    "ensemble_card",
    "push_folder",
    "upload_plan",
    "vise_card",
    "write_model_card",
]
