"""VisE: image representations learned from social-media engagement: mining, backbones, pretraining, conversion."""

from hf_memotion.vise.configuration_vise import ViseConfig
from hf_memotion.vise.convert import (
    CheckpointMismatchError,
    convert_released_checkpoint,
    load_released_state_dict,
    save_converted_checkpoint,
    to_released_state_dict,
)
from hf_memotion.vise.engagement import (
    REACTIONS,
    DemoEngagementConfig,
    engagement_features,
    load_engagement,
    make_demo_engagement,
)
from hf_memotion.vise.mining import ClusterModels, MiningConfig, fit_cluster_models, label_features, mine_labels
from hf_memotion.vise.modeling_vise import (
    ViseForImageClassification,
    ViseForPretraining,
    ViseModel,
    VisePreTrainedModel,
)
from hf_memotion.vise.pretraining import (
    LearningRateSchedule,
    PretrainingCollator,
    PretrainingSettings,
    load_mined_labels,
    pretrain_vise,
)

__all__ = [
    "REACTIONS",
    "CheckpointMismatchError",
    "ClusterModels",
    "DemoEngagementConfig",
    "LearningRateSchedule",
    "MiningConfig",
    "PretrainingCollator",
    "PretrainingSettings",
    "ViseConfig",
    "ViseForImageClassification",
    "ViseForPretraining",
    "ViseModel",
    "VisePreTrainedModel",
    "convert_released_checkpoint",
    "engagement_features",
    "fit_cluster_models",
    "label_features",
    "load_engagement",
    "load_mined_labels",
    "load_released_state_dict",
    "make_demo_engagement",
    "mine_labels",
    "pretrain_vise",
    "save_converted_checkpoint",
    "to_released_state_dict",
]
