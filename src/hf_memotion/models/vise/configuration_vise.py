"""Configuration of VisE backbones: a timm network and the two engagement heads of pretraining."""

from __future__ import annotations

import math
from typing import Any

from hf_memotion.models.timm_backbone import TimmBackboneConfig

__all__ = ["ViseConfig"]


class ViseConfig(TimmBackboneConfig):
    r"""Configuration of :class:`ViseModel` (features) and :class:`ViseForPretraining` (engagement heads).

    Attributes:
        architecture: A timm model name: ``"resnet50"``, ``"resnet101"``, ``"resnext101_32x16d"`` (the paper's),
            or any other.
        model_args: Extra ``timm.create_model`` keyword arguments.
        comment_clusters: Outputs of the comment head (k of the comment K-means; 5000 in the paper).
        reaction_clusters: Outputs of the reaction head (128 in the paper).
        prior_probability: pi of the heads' bias initialisation, ``-log((1 - pi) / pi)`` (0.01 in the paper). Under
            the softmax of both heads the same bias on every logit shifts them all alike, so it changes neither the
            probabilities nor the loss (the focal-loss prior it comes from matters for per-class sigmoids); it is
            kept because the paper does it.
        extra_features: Width of extra per-example features that :class:`ViseForImageClassification` concatenates
            to the pooled image features before its classifier (e.g. a frozen text encoder's sentence embedding
            for Hateful Memes); 0 for images only.
        num_labels, id2label, problem_type: :class:`ViseForImageClassification`'s labels and loss
            (``"single_label_classification"``, ``"multi_label_classification"`` or ``"regression"``; ``None``
            infers it from the labels, as transformers' classifiers do).
        initializer_range: Standard deviation of the heads' initial weights.

    Examples:
        >>> config = ViseConfig(architecture="resnet50", comment_clusters=5000)
        >>> round(config.initial_bias, 3)
        -4.595
    """

    model_type = "vise"
    comment_clusters: int = 5000
    reaction_clusters: int = 128
    prior_probability: float = 0.01
    extra_features: int = 0
    initializer_range: float = 0.01

    def __post_init__(self, **kwargs: Any):
        super().__post_init__(**kwargs)
        if not 0.0 < self.prior_probability < 1.0:
            raise ValueError(f"prior_probability must be in (0, 1), got {self.prior_probability}")
        if self.extra_features < 0:
            raise ValueError(f"extra_features must be >= 0, got {self.extra_features}")
        if self.comment_clusters < 1 or self.reaction_clusters < 1:
            raise ValueError("comment_clusters and reaction_clusters must be positive")

    @property
    def initial_bias(self) -> float:
        """The heads' initial bias, ``-log((1 - pi) / pi)``: every cluster starts at probability about pi."""
        return -math.log((1.0 - self.prior_probability) / self.prior_probability)
