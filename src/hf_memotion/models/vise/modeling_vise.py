"""VisE models: a timm backbone returning pooled features and feature maps, and its multi-task pretraining heads.

``ViseModel`` is what ``AutoModel.from_pretrained`` returns for a VisE folder: ``pooler_output``
``(batch, features)`` and ``last_hidden_state`` (the feature map). ``ViseForPretraining`` adds the two
heads of Eq. (1) of the VisE paper: a comment head trained with a soft-target cross-entropy over the
comment clusters (the mined normalised counts) and a reaction head trained with cross-entropy over
the reaction clusters (posts without reactions, label ``-1``, are ignored); the loss is their sum.
``ViseForImageClassification`` is the downstream variant (``AutoModelForImageClassification``): the shared
problem heads (one problem, ``config.problem_type`` honoured) on the pooled features, optionally concatenated
with extra features (a text embedding for multi-modal tasks). All three are the shared timm wrapper of
:mod:`hf_memotion.models.timm_backbone`, as the Memotion visual classifier is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutputWithNoAttention
from transformers.utils import ModelOutput, can_return_tuple

from hf_memotion.cards import ModelCardMixin
from hf_memotion.models.heads import ProblemHeads
from hf_memotion.models.timm_backbone import TimmBackboneMixin, create_timm_model, pooled_width
from hf_memotion.models.vise.configuration_vise import ViseConfig

__all__ = [
    "ViseForImageClassification",
    "ViseForPretraining",
    "ViseModel",
    "VisePreTrainedModel",
    "VisePretrainingOutput",
]


class VisePreTrainedModel(ModelCardMixin, TimmBackboneMixin, PreTrainedModel):
    """Base class: config class, the shared timm wrapper (init, checkpointing, layouts), the card written on save."""

    config_class = ViseConfig
    base_model_prefix = "vise"
    card_kind = "vise"
    timm_owner = "vise"

    def card_defaults(self) -> dict:
        """What the config tells the card: the architecture (and, once trained here, the origin)."""
        return {"origin": "pretrained", "architecture": self.config.architecture}

    def _init_weights(self, module: nn.Module) -> None:
        """The engagement heads' prior-probability bias (Sec. 3.2 of the paper); the shared initialisation elsewhere."""
        if isinstance(module, nn.Linear) and getattr(module, "_vise_head", False):
            init.normal_(module.weight, std=self.config.initializer_range)
            init.constant_(module.bias, self.config.initial_bias)
            return
        super()._init_weights(module)


class ViseModel(VisePreTrainedModel):
    """A VisE backbone: pooled features and the last feature map of a timm network.

    Examples:
        >>> import torch
        >>> model = ViseModel(ViseConfig(architecture="test_resnet")).eval()
        >>> out = model(torch.zeros(2, 3, 64, 64))
        >>> out.pooler_output.shape[0], out.last_hidden_state.ndim
        (2, 4)
    """

    timm_owner = None

    def __init__(self, config: ViseConfig):
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
        """Features of a batch of images ``(batch, 3, H, W)``; timm's per-stage maps with ``output_hidden_states``."""
        if pixel_values is None or pixel_values.ndim != 4:
            raise ValueError("pass pixel_values of shape (batch, 3, H, W)")
        if kwargs.get("output_attentions"):
            raise ValueError("output_attentions: a convolutional network has no attention weights")
        feature_map, pooled, hidden_states, _ = self.backbone_features(pixel_values, output_hidden_states)
        return BaseModelOutputWithPooling(
            last_hidden_state=feature_map, pooler_output=pooled, hidden_states=hidden_states
        )


@dataclass
class VisePretrainingOutput(ModelOutput):
    """Losses and logits of :class:`ViseForPretraining`."""

    loss: torch.Tensor | None = None
    comment_loss: torch.Tensor | None = None
    reaction_loss: torch.Tensor | None = None
    comment_logits: torch.Tensor | None = None
    reaction_logits: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class ViseForPretraining(VisePreTrainedModel):
    """A VisE backbone with the comment and reaction heads; loss = soft CE (comments) + CE (reactions).

    Examples:
        >>> import torch
        >>> model = ViseForPretraining(ViseConfig(architecture="test_resnet", comment_clusters=6, reaction_clusters=3))
        >>> targets = torch.tensor([[0.5, 0.5, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1.0]])
        >>> out = model(torch.zeros(2, 3, 64, 64), comment_targets=targets, reaction_labels=torch.tensor([2, -1]))
        >>> out.comment_logits.shape, bool(out.loss > 0)
        (torch.Size([2, 6]), True)
    """

    def __init__(self, config: ViseConfig):
        super().__init__(config)
        self.vise = ViseModel(config)
        features = pooled_width(self.vise.timm_model)
        self.comment_head = nn.Linear(features, config.comment_clusters)
        self.reaction_head = nn.Linear(features, config.reaction_clusters)
        self.comment_head._vise_head = True
        self.reaction_head._vise_head = True
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        comment_targets: torch.Tensor | None = None,
        reaction_labels: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        **kwargs: Any,
    ) -> VisePretrainingOutput:
        """Logits of both heads; with targets, the losses of Eq. (1).

        Args:
            pixel_values: Images ``(batch, 3, H, W)``.
            comment_targets: ``(batch, comment_clusters)`` soft targets (rows sum to 1; an all-zero row, a
                post without comments, adds no loss).
            reaction_labels: ``(batch,)`` reaction cluster ids, ``-1`` for posts without reactions.
            output_hidden_states: Also return timm's per-stage feature maps.
            **kwargs: Ignored (``Trainer`` may pass extra columns).
        """
        encoded = self.vise(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        pooled = encoded.pooler_output
        comment_logits = self.comment_head(pooled)
        reaction_logits = self.reaction_head(pooled)
        comment_loss = reaction_loss = None
        if comment_targets is not None:
            has_comments = comment_targets.sum(-1) > 0
            per_post = -(comment_targets * comment_logits.log_softmax(-1)).sum(-1)
            comment_loss = per_post[has_comments].mean() if has_comments.any() else comment_logits.sum() * 0
        if reaction_labels is not None:
            valid = reaction_labels >= 0
            reaction_loss = (
                nn.functional.cross_entropy(reaction_logits[valid], reaction_labels[valid])
                if valid.any()
                else reaction_logits.sum() * 0
            )
        losses = [x for x in (comment_loss, reaction_loss) if x is not None]
        return VisePretrainingOutput(
            loss=sum(losses) if losses else None,
            comment_loss=comment_loss,
            reaction_loss=reaction_loss,
            comment_logits=comment_logits,
            reaction_logits=reaction_logits,
            pooler_output=pooled,
            hidden_states=encoded.hidden_states,
        )


class ViseForImageClassification(VisePreTrainedModel):
    """A VisE backbone with a classifier, for downstream fine-tuning (``AutoModelForImageClassification``).

    Load a pretrained backbone with a new classifier:
    ``ViseForImageClassification.from_pretrained("org/vise-resnet50", num_labels=6)``. The classifier is the
    shared :class:`~hf_memotion.models.heads.ProblemHeads` with one problem (``"label"``, the config's
    ``id2label``); ``config.problem_type`` chooses the loss (single-label cross-entropy, multi-label binary
    cross-entropy, regression). With ``config.extra_features > 0``, ``extra_features`` (e.g. a frozen text
    encoder's sentence embedding) are concatenated to the pooled image features before the classifier.

    Examples:
        >>> import torch
        >>> config = ViseConfig(architecture="test_resnet", num_labels=3, extra_features=8)
        >>> model = ViseForImageClassification(config)
        >>> out = model(torch.zeros(2, 3, 64, 64), extra_features=torch.zeros(2, 8), labels=torch.tensor([0, 2]))
        >>> out.logits.shape, bool(out.loss > 0)
        (torch.Size([2, 3]), True)
        >>> multi = ViseForImageClassification(ViseConfig(architecture="test_resnet", num_labels=3,
        ...                                               problem_type="multi_label_classification"))
        >>> bool(multi(torch.zeros(2, 3, 64, 64), labels=torch.tensor([[1.0, 0, 1], [0, 0, 0]])).loss > 0)
        True
    """

    #: The one problem name of the classifier's heads.
    problem = "label"

    def __init__(self, config: ViseConfig):
        super().__init__(config)
        self.vise = ViseModel(config)
        labels = [config.id2label[i] for i in range(config.num_labels)]
        self.heads = ProblemHeads(pooled_width(self.vise.timm_model) + config.extra_features, {self.problem: labels})
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        extra_features: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        **kwargs: Any,
    ) -> ImageClassifierOutputWithNoAttention:
        """Logits ``(batch, num_labels)``; with ``labels``, the loss of ``config.problem_type``."""
        encoded = self.vise(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        pooled = encoded.pooler_output
        if self.config.extra_features:
            if extra_features is None or extra_features.shape != (pooled.shape[0], self.config.extra_features):
                raise ValueError(
                    f"this classifier takes extra_features of shape (batch, {self.config.extra_features}) "
                    "beside the images (config.extra_features)"
                )
            pooled = torch.cat([pooled, extra_features.to(pooled.dtype)], dim=-1)
        logits = self.heads(pooled)
        loss = self.heads.loss(logits, labels, self.config.problem_type) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=encoded.hidden_states)
