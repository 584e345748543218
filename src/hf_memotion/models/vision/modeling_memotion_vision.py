"""The Memotion paper's visual models as ``PreTrainedModel``s: a timm network, problem heads, ten-crop.

A batch of images ``(batch, 3, H, W)`` gives logits per problem; a batch of crops
``(batch, crops, 3, H, W)`` (ten-crop inference) runs as one batched forward over all crops and
returns, per problem, the mean of the crops' log-probabilities (Section 4.2 of the Memotion paper).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import can_return_tuple

from hf_memotion.cards import ModelCardMixin
from hf_memotion.models.heads import MemotionClassifierOutput, ProblemHeads, split_logits
from hf_memotion.models.timm_backbone import TimmBackboneMixin, create_timm_model, per_image, pooled_width
from hf_memotion.models.vision.configuration_memotion_vision import MemotionVisionConfig

__all__ = ["MemotionVisionForImageClassification", "MemotionVisionModel", "MemotionVisionPreTrainedModel"]


class MemotionVisionPreTrainedModel(ModelCardMixin, TimmBackboneMixin, PreTrainedModel):
    """Base class: config class, the shared timm wrapper (init, checkpointing, layouts), the card written on save."""

    config_class = MemotionVisionConfig
    base_model_prefix = "memotion_vision"

    def card_defaults(self) -> dict:
        """What the config tells the card: how the model is made and loaded, the timm architecture, the problems."""
        card = {
            "label": "vision",
            "pipeline_tag": "image-classification",
            "summary": f"the timm network `{self.config.architecture}` with one classification head per problem",
            "auto_model": "AutoModelForImageClassification",
            "auto_preprocessor": "AutoImageProcessor",
            "network": self.config.architecture,
        }
        return {"card": card, "problems": list(getattr(self.config, "problems", []) or [])}


class MemotionVisionModel(MemotionVisionPreTrainedModel):
    """A timm network returning pooled features (``pooler_output``) and the feature map.

    Examples:
        >>> import torch
        >>> model = MemotionVisionModel(MemotionVisionConfig(architecture="test_resnet")).eval()
        >>> model(torch.zeros(2, 3, 64, 64)).pooler_output.shape[0]
        2
    """

    def __init__(self, config: MemotionVisionConfig):
        super().__init__(config)
        self.timm_model = create_timm_model(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        """Features of a batch; for ``(batch, crops, ...)`` input the pooled features are averaged over crops.

        ``output_hidden_states=True`` adds timm's per-stage feature maps (a list of indices selects stages).
        """
        if kwargs.get("output_attentions"):
            raise ValueError("output_attentions: a convolutional network has no attention weights")
        feature_map, pooled, hidden_states, crops = self.backbone_features(pixel_values, output_hidden_states)
        if crops is not None:
            pooled = per_image(pooled, crops).mean(dim=1)
            feature_map = per_image(feature_map, crops)
            hidden_states = tuple(per_image(h, crops) for h in hidden_states) if hidden_states else None
        return BaseModelOutputWithPooling(
            last_hidden_state=feature_map, pooler_output=pooled, hidden_states=hidden_states
        )


class MemotionVisionForImageClassification(MemotionVisionPreTrainedModel):
    """The paper's visual classifier: a timm network whose ImageNet classifier is replaced by problem heads.

    Examples:
        >>> import torch
        >>> config = MemotionVisionConfig(architecture="test_resnet", problems=["humour", "sentiment"])
        >>> model = MemotionVisionForImageClassification(config).eval()
        >>> model(torch.zeros(2, 3, 64, 64)).logits.shape, model(torch.zeros(2, 10, 3, 64, 64)).logits.shape
        (torch.Size([2, 5]), torch.Size([2, 5]))
    """

    def __init__(self, config: MemotionVisionConfig):
        super().__init__(config)
        self.timm_model = create_timm_model(config)
        self.dropout = nn.Dropout(config.drop_rate)
        self.heads = ProblemHeads(pooled_width(self.timm_model), config.problem_labels, config.class_weights)
        self.post_init()

    @classmethod
    def from_timm(
        cls, architecture: str, *, pretrained_cfg_overlay: dict | None = None, **config_kwargs: Any
    ) -> MemotionVisionForImageClassification:
        """Build a classifier on timm's pre-trained weights, dropping the ImageNet classifier as the paper does.

        The weights come through timm's own mechanism: a Hub tag in ``architecture`` (e.g.
        ``"resnet50.a1_in1k"``) or a local file through ``pretrained_cfg_overlay={"file": path}``.
        """
        config = MemotionVisionConfig(architecture=architecture, **config_kwargs)
        model = cls(config)
        overrides = {"pretrained_cfg_overlay": pretrained_cfg_overlay} if pretrained_cfg_overlay else {}
        pretrained = create_timm_model(config, pretrained=True, **overrides)
        model.timm_model.load_state_dict(pretrained.state_dict())
        return model

    @classmethod
    def from_vise(cls, source: str, **config_kwargs: Any) -> MemotionVisionForImageClassification:
        """Build a classifier on a VisE backbone (a folder or Hub id of a ``ViseModel``; no remote code).

        Both are the same timm wrapper (:mod:`hf_memotion.models.timm_backbone`): the architecture, ``model_args``
        and network weights come from the VisE model; the problem heads are new. This is how a VisE backbone
        becomes a visual base model of the meme ensemble (``vise_backbone:`` in a training config).
        """
        from hf_memotion.models.vise.modeling_vise import ViseModel

        try:
            vise = ViseModel.from_pretrained(source)
        except OSError as err:
            raise FileNotFoundError(f"vise_backbone {source}: not a VisE model folder or Hub id ({err})") from None
        config = MemotionVisionConfig(
            architecture=vise.config.architecture, model_args=vise.config.model_args, **config_kwargs
        )
        model = cls(config)
        model.timm_model.load_state_dict(vise.timm_model.state_dict())
        return model

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        **kwargs: Any,
    ) -> MemotionClassifierOutput:
        """Classify images or crops; with ``labels`` the heads' loss (class-weighted CE summed over problems)."""
        if kwargs.get("output_attentions"):
            raise ValueError("output_attentions: a convolutional network has no attention weights")
        _, features, hidden_states, crops = self.backbone_features(pixel_values, output_hidden_states)
        logits = self.heads(self.dropout(features))
        if crops is not None:  # ten-crop: mean of the crops' log-probabilities, per problem
            per_problem = split_logits(logits, self.config.problem_labels)
            logits = torch.cat([per_image(v.log_softmax(-1), crops).mean(dim=1) for v in per_problem.values()], dim=-1)
            features = per_image(features, crops).mean(dim=1)
            hidden_states = tuple(per_image(h, crops) for h in hidden_states) if hidden_states else None
        loss = self.heads.loss(logits, labels, self.config.problem_type) if labels is not None else None
        return MemotionClassifierOutput(
            loss=loss,
            logits=logits,
            problem_logits=split_logits(logits, self.config.problem_labels),
            pooler_output=features,
            hidden_states=hidden_states,
        )
