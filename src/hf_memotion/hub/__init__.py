"""The Hub side of a saved folder: publishing it, checked downloads, and working without a network.

The cards a folder carries are :mod:`hf_memotion.cards`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

__all__ = [
    "HubPublishError",
    "PublishResult",
    "PushSpec",
    "download_model_folder",
    "offline_if_unreachable",
    "push_folder",
    "upload_plan",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "offline_if_unreachable": "hf_memotion.hub.connectivity",
        "download_model_folder": "hf_memotion.hub.snapshots",
        "HubPublishError": "hf_memotion.hub.publishing",
        "PublishResult": "hf_memotion.hub.publishing",
        "PushSpec": "hf_memotion.hub.publishing",
        "push_folder": "hf_memotion.hub.publishing",
        "upload_plan": "hf_memotion.hub.publishing",
    },
)

if TYPE_CHECKING:
    from hf_memotion.hub.connectivity import offline_if_unreachable
    from hf_memotion.hub.publishing import HubPublishError, PublishResult, PushSpec, push_folder, upload_plan
    from hf_memotion.hub.snapshots import download_model_folder
