"""VisE: image representations learned from social-media engagement.

The steps, each a spec and one entry point: :func:`mine_labels` (:mod:`~hf_memotion.vise.mining`, or
:mod:`~hf_memotion.vise.spark_mining`), :func:`pretrain` (:mod:`~hf_memotion.vise.pretraining`, on the shared
training spine) and :func:`evaluate` (:mod:`~hf_memotion.vise.protocols` and :mod:`~hf_memotion.vise.evaluation`).
The models live in :mod:`hf_memotion.models.vise`, the post and task readers in :mod:`hf_memotion.data`; they are
re-exported here.
"""

from hf_memotion.data.engagement import (
    REACTIONS,
    DemoEngagementSpec,
    engagement_features,
    load_engagement,
    make_demo_engagement,
)
from hf_memotion.models.vise import (
    ViseConfig,
    ViseForImageClassification,
    ViseForPretraining,
    ViseModel,
    VisePreTrainedModel,
)
from hf_memotion.models.vise.convert import (
    CheckpointMismatchError,
    convert_released_checkpoint,
    load_released_state_dict,
    save_converted_checkpoint,
    to_released_state_dict,
)
from hf_memotion.vise.mining import ClusterModels, MiningSpec, fit_cluster_models, label_features, mine_labels
from hf_memotion.vise.pretraining import (
    PretrainingArguments,
    PretrainingCollator,
    load_mined_labels,
    pretrain_vise,
)

__all__ = [
    "REACTIONS",
    "CheckpointMismatchError",
    "ClusterModels",
    "DemoEngagementSpec",
    "MiningSpec",
    "PretrainingArguments",
    "PretrainingCollator",
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
