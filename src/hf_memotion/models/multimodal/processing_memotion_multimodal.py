"""The joint model's processor: one meme's image and text to ``pixel_values``, ``input_ids`` and ``attention_mask``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig, ProcessorMixin
from transformers.feature_extraction_utils import BatchFeature

from hf_memotion.models.text.preprocessing import TextFeeding, encode_texts
from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor

__all__ = ["TOWER_IMAGE_STATISTICS", "MemotionMultimodalProcessor", "image_processor_for"]

#: Normalisation the transformers image towers were trained with, per ``model_type`` (their image processors').
TOWER_IMAGE_STATISTICS = {
    "clip_vision_model": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "siglip_vision_model": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "siglip2_vision_model": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def image_processor_for(
    vision_config: PretrainedConfig, source: str | None = None, **overrides: Any
) -> MemotionImageProcessor:
    """The :class:`MemotionImageProcessor` of an image encoder, with that encoder's own normalisation.

    A timm network gets timm's data config; a transformers tower its published image processor's mean and standard
    deviation when ``source`` (its Hub id or folder) has one, else :data:`TOWER_IMAGE_STATISTICS`, and its
    ``image_size`` as the crop.

    Examples:
        >>> from transformers import CLIPVisionConfig
        >>> processor = image_processor_for(CLIPVisionConfig(image_size=32, patch_size=8))
        >>> processor.crop_size, round(processor.mean[0], 3)
        (32, 0.481)
    """
    if vision_config.model_type == "memotion_vision":
        return MemotionImageProcessor.from_timm(vision_config.architecture, **overrides)
    mean, std = TOWER_IMAGE_STATISTICS.get(vision_config.model_type, ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    settings: dict[str, Any] = {"crop_size": int(vision_config.image_size), "mean": mean, "std": std}
    if source is not None:
        from transformers import AutoImageProcessor

        try:
            published = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError):  # a tower published without an image processor: the family's statistics
            published = None
        if published is not None and getattr(published, "image_mean", None) is not None:
            settings["mean"], settings["std"] = list(published.image_mean), list(published.image_std)
    return MemotionImageProcessor(**{**settings, **overrides})


class MemotionMultimodalProcessor(ProcessorMixin):
    """A :class:`MemotionImageProcessor` and a tokenizer, saved and loaded together (``AutoProcessor``).

    Args:
        image_processor: The image encoder's :class:`MemotionImageProcessor`.
        tokenizer: The text encoder's tokenizer.
        max_length: Tokens kept per text.
        pad_to: Every text padded to this length (a tower trained so, SigLIP's); ``None``: to the batch's longest.
            :class:`~hf_memotion.models.text.preprocessing.TextFeeding` says which.

    Examples:
        >>> from PIL import Image
        >>> from hf_memotion.models.text.tiny import build_tiny_text_backbone
        >>> _, tokenizer = build_tiny_text_backbone("bert", ["lol nice"], hidden_size=16, num_layers=1)
        >>> processor = MemotionMultimodalProcessor(MemotionImageProcessor(crop_size=32), tokenizer)
        >>> batch = processor(images=[Image.new("RGB", (40, 30))], text=["lol nice"], ten_crop=False)
        >>> sorted(batch), tuple(batch["pixel_values"].shape)
        (['attention_mask', 'input_ids', 'pixel_values'], (1, 3, 32, 32))
    """

    def __init__(
        self,
        image_processor: MemotionImageProcessor | None = None,
        tokenizer: Any = None,
        max_length: int = 64,
        pad_to: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(image_processor, tokenizer)
        self.max_length, self.pad_to = int(max_length), pad_to

    def __call__(
        self,
        images: Sequence[Any] | None = None,
        text: Sequence[str] | None = None,
        *,
        ten_crop: bool | None = None,
        train: bool = False,
        **kwargs: Any,
    ) -> BatchFeature:
        """Pixels (the training augmentation when ``train``; ten crops when ``ten_crop``) and tokens, padded right.

        Texts are truncated to ``max_length`` tokens and padded as the text tower was trained (``pad_to``).
        """
        if images is None or text is None:
            raise ValueError("a joint model reads both halves of a meme: pass images and text, one of each per meme")
        images, text = list(images), list(text)
        if len(images) != len(text):
            raise ValueError(f"got {len(images)} images and {len(text)} texts: pass one of each per meme")
        pixels = self.image_processor(images, ten_crop=ten_crop, train=train)
        feeding = TextFeeding(self.max_length, self.pad_to)
        tokens = feeding.pad(self.tokenizer, encode_texts(self.tokenizer, text, feeding.max_length))
        return BatchFeature({**pixels, **tokens})
