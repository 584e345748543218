"""The Memotion paper's visual models as ``PreTrainedModel``s: a timm network, problem heads, ten-crop.

A batch of images ``(batch, 3, H, W)`` gives logits per problem; a batch of crops
``(batch, crops, 3, H, W)`` (ten-crop inference) runs as one batched forward over all crops and
returns, per problem, the mean of the crops' log-probabilities (Section 4.2 of the Memotion paper).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from hf_memotion.cards import ModelCardMixin
from hf_memotion.models.heads import MemotionClassifierOutput, ProblemHeads, split_logits
from hf_memotion.models.vision.configuration_memotion_vision import MemotionVisionConfig

__all__ = ["MemotionVisionForImageClassification", "MemotionVisionModel", "MemotionVisionPreTrainedModel"]


def _create_backbone(config: MemotionVisionConfig, **overrides: Any) -> nn.Module:
    return timm.create_model(config.architecture, num_classes=0, **{**config.model_args, **overrides})


def _flatten_crops(pixel_values: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    if pixel_values is None:
        raise ValueError("pass pixel_values: run the images through the model's MemotionImageProcessor first")
    if pixel_values.ndim == 5:
        batch, crops = pixel_values.shape[:2]
        return pixel_values.reshape(batch * crops, *pixel_values.shape[2:]), crops
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must be (batch, 3, H, W) or (batch, crops, 3, H, W), got shape {tuple(pixel_values.shape)}"
        )
    return pixel_values, None


#: Images per network call at inference on a CPU (``inference_chunk_size="auto"``), from ``scripts/bench.py``.
CPU_IMAGES_PER_FORWARD = 4


class MemotionVisionPreTrainedModel(ModelCardMixin, PreTrainedModel):
    """Base class: config class, loading conventions, the card written on save (timm keeps its own init)."""

    config_class = MemotionVisionConfig
    base_model_prefix = "memotion_vision"
    main_input_name = "pixel_values"

    def card_defaults(self) -> dict:
        """What the config tells the card: the modality, the timm architecture, the problems."""
        return {"modality": "vision", "architecture": self.config.architecture,
                "problems": list(getattr(self.config, "problems", []) or [])}  # fmt: skip

    #: Feed the network NHWC tensors (set by :meth:`to_channels_last`).
    channels_last = False

    def to_channels_last(self) -> MemotionVisionPreTrainedModel:
        """Store weights and feed inputs channels-last (NHWC): faster convolutions on CPU (and GPU tensor cores).

        Example:
            >>> import torch
            >>> model = MemotionVisionModel(MemotionVisionConfig(architecture="test_resnet")).eval()
            >>> before = model(torch.ones(1, 3, 32, 32)).pooler_output
            >>> torch.allclose(model.to_channels_last()(torch.ones(1, 3, 32, 32)).pooler_output, before, atol=1e-5)
            True
        """
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    #: At inference, run at most this many images (crops) per network call: ``"auto"`` (4 on a CPU, all at
    #: once on a GPU), a number, or ``None`` (all at once).
    inference_chunk_size: int | str | None = "auto"

    def set_inference_chunk_size(self, size: int | str | None) -> MemotionVisionPreTrainedModel:
        """Split inference batches into calls of ``size`` images (crops); training batches are never split.

        On a CPU a convolution's working set must stay in cache: ``scripts/bench.py`` measured ResNet-50
        channels-last at about 2.4x the images/s with 4 images per call than with 80 (a batch of 8 memes'
        ten crops). Outputs are unchanged.

        Example:
            >>> import torch
            >>> model = MemotionVisionModel(MemotionVisionConfig(architecture="test_resnet")).eval()
            >>> x = torch.rand(3, 10, 3, 32, 32)
            >>> whole = model(x).pooler_output
            >>> torch.allclose(model.set_inference_chunk_size(4)(x).pooler_output, whole, atol=1e-5)
            True
        """
        if size != "auto" and size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"inference_chunk_size must be 'auto', None or a positive int, got {size!r}")
        self.inference_chunk_size = size
        return self

    def _features(self, flat: torch.Tensor, forward: Any) -> Any:
        size = self.inference_chunk_size
        if size == "auto":
            size = CPU_IMAGES_PER_FORWARD if flat.device.type == "cpu" else None
        if self.training or size is None or flat.shape[0] <= size:
            return forward(flat)
        parts = [forward(chunk) for chunk in flat.split(size)]
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(items) for items in zip(*parts, strict=True))
        return torch.cat(parts)

    def _network_input(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        flat, crops = _flatten_crops(pixel_values)
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        return flat, crops

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise only the heads; the timm network was initialised by timm (or loads weights)."""
        if isinstance(module, ProblemHeads):
            for linear in module.classifiers.values():
                nn.init.normal_(linear.weight, std=self.config.initializer_range)
                nn.init.zeros_(linear.bias)


class MemotionVisionModel(MemotionVisionPreTrainedModel):
    """A timm network returning pooled features (``pooler_output``) and the feature map.

    Example:
        >>> import torch
        >>> model = MemotionVisionModel(MemotionVisionConfig(architecture="test_resnet")).eval()
        >>> model(torch.zeros(2, 3, 64, 64)).pooler_output.shape[0]
        2
    """

    def __init__(self, config: MemotionVisionConfig):
        super().__init__(config)
        self.timm_model = _create_backbone(config)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor | None = None, **kwargs: Any) -> BaseModelOutputWithPooling:
        """Features of a batch; for ``(batch, crops, ...)`` input the pooled features are averaged over crops."""
        flat, crops = self._network_input(pixel_values)

        def network(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            feature_map = self.timm_model.forward_features(x)
            return feature_map, self.timm_model.forward_head(feature_map, pre_logits=True)

        feature_map, pooled = self._features(flat, network)
        if crops is not None:
            pooled = pooled.view(-1, crops, pooled.shape[-1]).mean(dim=1)
            feature_map = feature_map.view(-1, crops, *feature_map.shape[1:])
        return BaseModelOutputWithPooling(last_hidden_state=feature_map, pooler_output=pooled)


class MemotionVisionForImageClassification(MemotionVisionPreTrainedModel):
    """The paper's visual classifier: a timm network whose ImageNet classifier is replaced by problem heads.

    Example:
        >>> import torch
        >>> config = MemotionVisionConfig(architecture="test_resnet", problems=["humour", "sentiment"])
        >>> model = MemotionVisionForImageClassification(config).eval()
        >>> model(torch.zeros(2, 3, 64, 64)).logits.shape, model(torch.zeros(2, 10, 3, 64, 64)).logits.shape
        (torch.Size([2, 5]), torch.Size([2, 5]))
    """

    def __init__(self, config: MemotionVisionConfig):
        super().__init__(config)
        self.timm_model = _create_backbone(config)
        self.dropout = nn.Dropout(config.drop_rate)
        self.heads = ProblemHeads(self.timm_model.num_features, config.problem_labels, config.class_weights)
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
        pretrained = _create_backbone(config, pretrained=True, **overrides)
        model.timm_model.load_state_dict(pretrained.state_dict())
        return model

    @classmethod
    def from_vise(cls, source: str, **config_kwargs: Any) -> MemotionVisionForImageClassification:
        """Build a classifier on a VisE backbone (a folder or Hub id of a ``ViseModel``; no remote code).

        The architecture and ``model_args`` come from the VisE config, the network weights from its
        ``timm_model``; the problem heads are new. This is how a VisE backbone becomes a visual base model of
        the meme ensemble (``vise_backbone:`` in a training config).
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

    def forward(
        self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs: Any
    ) -> MemotionClassifierOutput:
        """Classify images or crops; with ``labels`` the class-weighted loss summed over problems."""
        flat, crops = self._network_input(pixel_values)
        features = self._features(
            flat, lambda x: self.timm_model.forward_head(self.timm_model.forward_features(x), pre_logits=True)
        )
        logits = self.heads(self.dropout(features))
        if crops is not None:  # ten-crop: mean of the crops' log-probabilities, per problem
            per_problem = split_logits(logits, self.config.problem_labels)
            logits = torch.cat(
                [v.log_softmax(-1).view(-1, crops, v.shape[-1]).mean(dim=1) for v in per_problem.values()], dim=-1
            )
            features = features.view(-1, crops, features.shape[-1]).mean(dim=1)
        loss = self.heads.loss(logits, labels) if labels is not None else None
        return MemotionClassifierOutput(
            loss=loss,
            logits=logits,
            problem_logits=split_logits(logits, self.config.problem_labels),
            hidden_states=features,
        )
