"""VisE: image representations learned from social-media engagement.

The steps, each a spec and one entry point: :func:`mine_labels` (:mod:`~hf_memotion.vise.mining`, or
:mod:`~hf_memotion.vise.spark_mining`), :func:`pretrain` (:mod:`~hf_memotion.vise.pretraining`, on the shared
training spine) and :func:`evaluate` (:mod:`~hf_memotion.vise.evaluation`).
The models live in :mod:`hf_memotion.models.vise`, the post and task readers in :mod:`hf_memotion.data`; they are
re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "REACTIONS": "hf_memotion.data.engagement",
        "DemoEngagementSpec": "hf_memotion.data.engagement",
        "engagement_features": "hf_memotion.data.engagement",
        "load_engagement": "hf_memotion.data.engagement",
        "make_demo_engagement": "hf_memotion.data.engagement",
        "ViseConfig": "hf_memotion.models.vise",
        "ViseForImageClassification": "hf_memotion.models.vise",
        "ViseForPretraining": "hf_memotion.models.vise",
        "ViseModel": "hf_memotion.models.vise",
        "VisePreTrainedModel": "hf_memotion.models.vise",
        "CheckpointMismatchError": "hf_memotion.models.vise.convert",
        "convert_released_checkpoint": "hf_memotion.models.vise.convert",
        "load_released_state_dict": "hf_memotion.models.vise.convert",
        "save_converted_checkpoint": "hf_memotion.models.vise.convert",
        "to_released_state_dict": "hf_memotion.models.vise.convert",
        "ClusterModels": "hf_memotion.vise.cluster_models",
        "MiningSpec": "hf_memotion.vise.mining_steps",
        "fit_cluster_models": "hf_memotion.vise.mining",
        "label_features": "hf_memotion.vise.mining_steps",
        "mine_labels": "hf_memotion.vise.mining",
        "PretrainingArguments": "hf_memotion.vise.pretraining",
        "PretrainingCollator": "hf_memotion.vise.pretraining",
        "load_mined_labels": "hf_memotion.vise.pretraining",
        "pretrain_vise": "hf_memotion.vise.pretraining",
    },
)

if TYPE_CHECKING:
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
    from hf_memotion.vise.cluster_models import ClusterModels
    from hf_memotion.vise.mining import fit_cluster_models, mine_labels
    from hf_memotion.vise.mining_steps import MiningSpec, label_features
    from hf_memotion.vise.pretraining import (
        PretrainingArguments,
        PretrainingCollator,
        load_mined_labels,
        pretrain_vise,
    )
