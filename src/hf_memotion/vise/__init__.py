"""VisE: image representations learned from social-media engagement (mining pseudo-labels; models follow)."""

from hf_memotion.vise.engagement import (
    REACTIONS,
    DemoEngagementConfig,
    engagement_features,
    load_engagement,
    make_demo_engagement,
)
from hf_memotion.vise.mining import ClusterModels, MiningConfig, fit_cluster_models, label_features, mine_labels

__all__ = [
    "REACTIONS",
    "ClusterModels",
    "DemoEngagementConfig",
    "MiningConfig",
    "engagement_features",
    "fit_cluster_models",
    "label_features",
    "load_engagement",
    "make_demo_engagement",
    "mine_labels",
]
