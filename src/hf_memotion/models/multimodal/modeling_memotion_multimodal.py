"""A joint image-text base model as ``PreTrainedModel``s: two encoders, projections, a fusion, the problem heads.

image -> image encoder (a timm network, or a transformers tower such as CLIP's or SigLIP's) -> pooled -> projection
text  -> text encoder (any transformers text encoder, CLIP's and SigLIP's towers included) -> pooled -> projection
the two projections -> fusion (``concat``, ``interaction``: Hate-CLIPper's outer product, ``align``: elementwise
product) -> dropout -> FFN -> one linear head per problem, trained with the class-weighted loss the unimodal members
use. Ten crops ``(batch, crops, 3, H, W)`` are encoded together and their pooled image features averaged.

Unlike the unimodal members, this one sees both halves of a meme at once, so it can learn what only their
combination tells (on the demo data: the text gives an intensity's half, the image its parity).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import can_return_tuple

from hf_memotion.cards import ModelCardMixin
from hf_memotion.models.heads import MemotionClassifierOutput, ProblemHeads, split_logits
from hf_memotion.models.multimodal.configuration_memotion_multimodal import MemotionMultimodalConfig
from hf_memotion.models.text.modeling_memotion_text import _drop_unused_pooler, _select_hidden_states, pool_sequence
from hf_memotion.models.text.preprocessing import TextFeeding
from hf_memotion.models.timm_backbone import _flatten_crops, create_timm_model, per_image, pooled_width
from hf_memotion.models.towers import build_tower, load_tower, tower_config
from hf_memotion.models.vision.modeling_memotion_vision import MemotionVisionModel

__all__ = [
    "MemotionMultimodalForClassification",
    "MemotionMultimodalModel",
    "MemotionMultimodalPreTrainedModel",
    "fuse",
]


def fuse(image: torch.Tensor, text: torch.Tensor, fusion: str) -> torch.Tensor:
    """Fuse projected image and text embeddings ``(batch, d)`` into one feature vector per meme.

    Examples:
        >>> image, text = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])
        >>> fuse(image, text, "concat").tolist(), fuse(image, text, "align").tolist()
        ([[1.0, 2.0, 3.0, 4.0]], [[3.0, 8.0]])
        >>> fuse(image, text, "interaction").tolist()  # every image feature times every text feature
        [[3.0, 4.0, 6.0, 8.0]]
    """
    if fusion == "concat":
        return torch.cat([image, text], dim=-1)
    if fusion == "align":
        return image * text
    if fusion == "interaction":
        return (image[:, :, None] * text[:, None, :]).flatten(1)
    raise ValueError(f"unknown fusion {fusion!r}; expected 'concat', 'interaction' or 'align'")


def fused_size(projection_dim: int, fusion: str) -> int:
    """Width of :func:`fuse`'s output."""
    return {"concat": 2 * projection_dim, "align": projection_dim, "interaction": projection_dim**2}[fusion]


class MemotionMultimodalPreTrainedModel(ModelCardMixin, PreTrainedModel):
    """Base class: config class, weight initialisation, frozen encoders kept in eval mode, the card written on save."""

    config_class = MemotionMultimodalConfig
    base_model_prefix = "memotion_multimodal"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = False  # the timm and transformers encoders checkpoint in different ways
    _supports_sdpa = True

    def card_defaults(self) -> dict:
        """What the config tells the card: how the model is made and loaded, both encoders, the fusion, the problems."""
        vision, text = self.config.vision_config, self.config.text_config
        image = getattr(vision, "architecture", None) or getattr(vision, "_name_or_path", "") or vision.model_type
        words = getattr(text, "_name_or_path", "") or text.model_type
        card = {
            "label": "joint",
            "pipeline_tag": "image-classification",
            "summary": f"the image encoder `{image}` and the text encoder `{words}`, {self.config.fusion} fusion, and "
            "one classification head per problem",
            "auto_model": "AutoModelForSequenceClassification",
            "auto_preprocessor": "AutoProcessor",
            "network": f"{image} + {words}",
        }
        return {"card": card, "problems": list(self.config.problems)}

    def _init_weights(self, module: nn.Module) -> None:
        """Transformers' initialisation (the encoders keep their own), and the heads' class weights."""
        super()._init_weights(module)
        if isinstance(module, ProblemHeads):
            module.reset_class_weights()

    def _encoders(self) -> MemotionMultimodalModel:
        return self if isinstance(self, MemotionMultimodalModel) else self.memotion_multimodal

    def train(self, mode: bool = True):
        """Train mode, except for frozen encoders: they stay in eval mode (their BatchNorm statistics and dropout)."""
        super().train(mode)
        encoders = self._encoders()
        if self.config.freeze_image_encoder:
            encoders.image_encoder.eval()
        if self.config.freeze_text_encoder:
            encoders.text_encoder.eval()
        return self

    def get_input_embeddings(self) -> nn.Module:
        """The text encoder's token embeddings."""
        return self._encoders().text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the text encoder's token embeddings (``resize_token_embeddings`` uses it)."""
        self._encoders().text_encoder.set_input_embeddings(value)


class MemotionMultimodalModel(MemotionMultimodalPreTrainedModel):
    """Both encoders, their projections and the fusion: ``pooler_output`` is the fused ``(batch, features)``.

    Examples:
        >>> from transformers import BertConfig
        >>> text = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                   intermediate_size=32)
        >>> config = MemotionMultimodalConfig(vision_config={"model_type": "memotion_vision",
        ...                                   "architecture": "test_resnet"}, text_config=text, projection_dim=4)
        >>> model = MemotionMultimodalModel(config).eval()
        >>> out = model(pixel_values=torch.zeros(2, 3, 32, 32), input_ids=torch.tensor([[2, 5, 3], [2, 7, 3]]))
        >>> out.pooler_output.shape  # interaction: 4 x 4 features
        torch.Size([2, 16])
    """

    def __init__(self, config: MemotionMultimodalConfig):
        super().__init__(config)
        self.image_encoder = build_tower(config.vision_config)
        self.text_encoder = build_tower(config.text_config)
        self.image_projection = nn.Linear(self._image_width(), config.projection_dim)
        self.text_projection = nn.Linear(self._text_width(), config.projection_dim)
        self._text_takes_token_types = "token_type_ids" in inspect.signature(self.text_encoder.forward).parameters
        self._text_masks_padding = TextFeeding.of_member(config).masks_padding  # SigLIP's attends to it
        self.post_init()
        if config.text_pooling != "pooler":
            _drop_unused_pooler(self.text_encoder)
        if config.freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        if config.freeze_text_encoder:
            self.text_encoder.requires_grad_(False)

    def _image_width(self) -> int:
        if isinstance(self.image_encoder, MemotionVisionModel):
            return pooled_width(self.image_encoder.timm_model)
        return int(self.config.vision_config.hidden_size)

    def _text_width(self) -> int:
        text = self.config.text_config
        if self.config.text_pooling == "pooler":
            return int(getattr(text, "projection_size", None) or text.hidden_size)
        return int(text.hidden_size)

    def image_features(self, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """The image encoder's pooled features, one row per image (ten crops: their mean)."""
        if isinstance(self.image_encoder, MemotionVisionModel):  # timm: crops, chunking and layout handled there
            if pixel_values is None:
                raise ValueError("pass pixel_values: run the images through the model's processor first")
            return self.image_encoder(pixel_values).pooler_output
        flat, crops = _flatten_crops(pixel_values)
        flat = flat.to(self.image_encoder.dtype)
        pooled = self.image_encoder(pixel_values=flat).pooler_output
        return per_image(pooled, crops).mean(dim=1) if crops is not None else pooled

    def text_features(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        """The text encoder's pooled features (``config.text_pooling``) and its outputs."""
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None:
            raise ValueError("pass input_ids (or inputs_embeds): tokenize the text with the model's processor first")
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        inputs: dict[str, Any] = {
            "attention_mask": attention_mask if self._text_masks_padding else None,
            "return_dict": True,
        }
        inputs["input_ids" if input_ids is not None else "inputs_embeds"] = reference
        if token_type_ids is not None and self._text_takes_token_types:
            inputs["token_type_ids"] = token_type_ids
        if output_hidden_states:
            inputs["output_hidden_states"] = True
        if output_attentions:
            inputs["output_attentions"] = True
        encoded = self.text_encoder(**inputs)
        pooling = self.config.text_pooling
        if pooling == "pooler":
            return encoded.pooler_output, encoded
        hidden = encoded.last_hidden_state
        if pooling == "mean":
            weights = attention_mask.to(hidden.dtype)[..., None]
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0), encoded
        return pool_sequence(hidden, attention_mask, pooling), encoded

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        """Encode memes: ``last_hidden_state`` the text encoder's, ``pooler_output`` the fused features.

        ``output_hidden_states=True`` returns the text encoder's hidden states (a list of indices keeps those, ``None``
        in the other places), ``output_attentions=True`` its attention weights.
        """
        attentions = bool(kwargs.get("output_attentions", self.config.output_attentions))
        wanted = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_image_encoder):
            image = self.image_features(pixel_values)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_text_encoder):
            text, encoded = self.text_features(
                input_ids, attention_mask, token_type_ids, inputs_embeds, bool(wanted), attentions
            )
        image = self.image_projection(image.to(self.image_projection.weight.dtype))
        text = self.text_projection(text.to(self.text_projection.weight.dtype))
        return BaseModelOutputWithPooling(
            last_hidden_state=encoded.last_hidden_state,
            pooler_output=fuse(image, text, self.config.fusion),
            hidden_states=_select_hidden_states(encoded.hidden_states, wanted) if wanted else None,
            attentions=encoded.attentions if attentions else None,
        )


class MemotionMultimodalForClassification(MemotionMultimodalPreTrainedModel):
    """A joint member of the modality ensemble: :class:`MemotionMultimodalModel` + FFN + one head per problem.

    With ``labels`` (``(batch,)`` for one problem, ``(batch, n_problems)`` for several, ``-100`` ignored) the output
    carries the class-weighted cross-entropy summed over problems, as the unimodal members' do.

    Examples:
        >>> from transformers import BertConfig
        >>> text = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                   intermediate_size=32)
        >>> config = MemotionMultimodalConfig(
        ...     vision_config={"model_type": "memotion_vision", "architecture": "test_resnet"}, text_config=text,
        ...     problems=["humour", "humour_intensity"], projection_dim=4, ffn_size=8)
        >>> model = MemotionMultimodalForClassification(config).eval()
        >>> out = model(pixel_values=torch.zeros(1, 10, 3, 32, 32), input_ids=torch.tensor([[2, 5, 3]]),
        ...             labels=torch.tensor([[1, 2]]))
        >>> out.logits.shape, sorted(out.problem_logits), out.loss.ndim
        (torch.Size([1, 6]), ['humour', 'humour_intensity'], 0)
    """

    def __init__(self, config: MemotionMultimodalConfig):
        super().__init__(config)
        self.memotion_multimodal = MemotionMultimodalModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.ffn = nn.Sequential(
            nn.Linear(fused_size(config.projection_dim, config.fusion), config.ffn_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
        )
        self.heads = ProblemHeads(config.ffn_size, config.problem_labels, config.class_weights)
        self.post_init()

    @classmethod
    def from_encoders(
        cls,
        image: str | os.PathLike | None = None,
        text: str | os.PathLike | None = None,
        *,
        architecture: str | None = None,
        revision: str | None = None,
        **config_kwargs: Any,
    ) -> MemotionMultimodalForClassification:
        """Build a joint classifier on pre-trained encoders; projections, FFN and heads start fresh.

        Args:
            image: Hub id or folder of a transformers image tower or of a CLIP/SigLIP dual encoder (its image tower).
            text: Hub id or folder of a transformers text encoder or of a dual encoder (its text tower); default:
                ``image`` when that is a dual encoder.
            architecture: A timm image network instead of ``image`` (``"vit_base_patch16_clip_224.openai"``: timm's
                pretrained weights, through timm's own download or cache).
            revision: Hub revision of both sources.
            **config_kwargs: :class:`MemotionMultimodalConfig` fields (``problems``, ``fusion``...).

        Example (downloads CLIP ViT-L/14 once, not run here)::

            model = MemotionMultimodalForClassification.from_encoders(
                "openai/clip-vit-large-patch14", problems=["offensive_intensity"], fusion="interaction")
        """
        if (image is None) == (architecture is None):
            raise ValueError("give exactly one image encoder: image (a Hub id or folder) or architecture (a timm name)")
        text = text if text is not None else image
        if text is None:
            raise ValueError("give a text encoder: text (a Hub id or folder)")
        from transformers import AutoConfig

        text_config = tower_config(AutoConfig.from_pretrained(text, revision=revision), "text")
        if architecture is not None:
            vision_config = {"model_type": "memotion_vision", "architecture": architecture}
        else:
            vision_config = tower_config(AutoConfig.from_pretrained(image, revision=revision), "vision")
        model = cls(MemotionMultimodalConfig(vision_config=vision_config, text_config=text_config, **config_kwargs))
        return model.load_pretrained_encoders(image, text, timm_pretrained=architecture is not None, revision=revision)

    def load_pretrained_encoders(
        self,
        image: str | os.PathLike | None = None,
        text: str | os.PathLike | None = None,
        *,
        timm_pretrained: bool = False,
        revision: str | None = None,
    ) -> MemotionMultimodalForClassification:
        """Replace the encoders' weights with pre-trained ones (the towers must match the config's encoders).

        Args:
            image: Hub id or folder of the image tower (or of a dual encoder holding it).
            text: Hub id or folder of the text encoder (or of a dual encoder holding it).
            timm_pretrained: Load timm's pre-trained weights into a timm image encoder instead.
            revision: Hub revision of both sources.
        """
        encoders = self.memotion_multimodal
        if timm_pretrained:
            network = encoders.image_encoder.timm_model
            network.load_state_dict(create_timm_model(self.config.vision_config, pretrained=True).state_dict())
        elif image is not None:
            encoders.image_encoder.load_state_dict(load_tower(image, "vision", revision=revision).state_dict())
        if text is not None:
            weights = load_tower(text, "text", revision=revision).state_dict()
            if self.config.text_pooling != "pooler":  # the pooler was dropped (BERT's): its weights are not read
                weights = {k: v for k, v in weights.items() if not k.startswith("pooler.")}
            encoders.text_encoder.load_state_dict(weights)
        return self

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        **kwargs: Any,
    ) -> MemotionClassifierOutput:
        """Classify memes; see the class docstring for ``labels``."""
        encoded = self.memotion_multimodal(
            pixel_values=pixel_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        hidden = self.ffn(self.dropout(encoded.pooler_output))
        logits = self.heads(hidden)
        loss = self.heads.loss(logits, labels, self.config.problem_type) if labels is not None else None
        return MemotionClassifierOutput(
            loss=loss,
            logits=logits,
            problem_logits=split_logits(logits, self.config.problem_labels),
            pooler_output=hidden,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
