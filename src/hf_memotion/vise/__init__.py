"""VisE: image representations learned from social-media engagement: mining pseudo-labels, backbones, conversion."""

from hf_memotion.vise.configuration_vise import ViseConfig
from hf_memotion.vise.convert import CheckpointMismatchError, convert_released_checkpoint, load_released_state_dict
from hf_memotion.vise.engagement import (
    REACTIONS,
    DemoEngagementConfig,
    engagement_features,
    load_engagement,
    make_demo_engagement,
)
from hf_memotion.vise.mining import ClusterModels, MiningConfig, fit_cluster_models, label_features, mine_labels
from hf_memotion.vise.modeling_vise import ViseForPretraining, ViseModel, VisePreTrainedModel

__all__ = [
    "REACTIONS",
    "CheckpointMismatchError",
    "ClusterModels",
    "DemoEngagementConfig",
    "MiningConfig",
    "ViseConfig",
    "ViseForPretraining",
    "ViseModel",
    "VisePreTrainedModel",
    "convert_released_checkpoint",
    "engagement_features",
    "fit_cluster_models",
    "label_features",
    "load_engagement",
    "load_released_state_dict",
    "make_demo_engagement",
    "mine_labels",
]
