"""VisE: image representations learned from social-media engagement, by mining, pretraining and downstream protocols.

The method's steps, each a spec and one entry point: :func:`mine_labels` (:mod:`~hf_memotion.vise.mining`, or
:mod:`~hf_memotion.vise.spark_mining` on Spark), :func:`pretrain_vise` (:mod:`~hf_memotion.vise.pretraining`, on the
shared training spine) and the downstream protocols (:mod:`~hf_memotion.vise.evaluation`); what the scripts run is in
:mod:`~hf_memotion.vise.commands`, their configs in :mod:`~hf_memotion.vise.specs`. The VisE *model* (its config,
``ViseModel``, the released checkpoints' conversion, the baselines) lives in :mod:`hf_memotion.models.vise`; the
engagement posts and downstream tasks are read by :mod:`hf_memotion.data`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

__all__ = [
    "ClusterModels",
    "MiningSpec",
    "PretrainingArguments",
    "PretrainingCollator",
    "fit_cluster_models",
    "label_features",
    "load_mined_labels",
    "mine_labels",
    "pretrain_vise",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
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
    from hf_memotion.vise.cluster_models import ClusterModels
    from hf_memotion.vise.mining import fit_cluster_models, mine_labels
    from hf_memotion.vise.mining_steps import MiningSpec, label_features
    from hf_memotion.vise.pretraining import PretrainingArguments, PretrainingCollator, load_mined_labels, pretrain_vise
