"""The ensemble's processor: memes (images and texts) to every base model's inputs.

Base models with the same preprocessing (the same tokenizer and ``max_length``, or the same image
processor settings) share one tensor, so a meme is tokenized, resized and cropped once per distinct
preprocessing. A joint (multimodal) member's processor counts as its two halves, each shared with the unimodal
members that preprocess alike, so a meme is still tokenized and cropped once. Keys are ``"<group>.<input name>"``
(e.g. ``"text.input_ids"``, ``"vision.pixel_values"``), each with the memes on the first axis: the pipeline pads a
batch of single-meme outputs with transformers' own collate function (``padding_value``/``padding_side``
below), and :meth:`MemeProcessor.model_inputs` puts each tokenizer's pad id back where that
collate function padded with zeros.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hf_memotion.models.text.preprocessing import encode_texts

__all__ = ["MemeProcessor"]


def _group_key(modality: str, preprocessor: Any, max_length: int | None) -> str:
    if modality == "text":
        return json.dumps(
            {"tokenizer": preprocessor.name_or_path, "vocab": len(preprocessor), "max_length": max_length}
        )
    return json.dumps(preprocessor.to_dict(), sort_keys=True, default=str)


class MemeProcessor:
    """Turns memes into the inputs of every base model of an ensemble, one tensor per distinct preprocessing.

    Args:
        base_models: The ensemble's base model entries (``name``, ``modality``), in order.
        preprocessors: Base model name -> its tokenizer (text), image processor (vision) or
            :class:`~hf_memotion.models.multimodal.MemotionMultimodalProcessor` (multimodal).
        max_lengths: Base model name -> its ``max_length`` (text and multimodal models).

    Examples:
        >>> from PIL import Image
        >>> from hf_memotion.models.text.tiny import build_tiny_text_backbone
        >>> from hf_memotion.models.vision import MemotionImageProcessor
        >>> _, tokenizer = build_tiny_text_backbone("bert", ["lol nice"], hidden_size=16, num_layers=1)
        >>> processor = MemeProcessor(
        ...     [{"name": "bert", "modality": "text"}, {"name": "cnn", "modality": "vision"}],
        ...     {"bert": tokenizer, "cnn": MemotionImageProcessor(crop_size=32)}, {"bert": 16})
        >>> batch = processor([Image.new("RGB", (40, 30))], ["LOL nice"], ten_crop=True)
        >>> sorted(batch), tuple(batch["cnn.pixel_values"].shape)
        (['bert.attention_mask', 'bert.input_ids', 'cnn.pixel_values'], (1, 10, 3, 32, 32))
    """

    #: Read by transformers' ``pad_collate_fn``: keys it does not know are padded with 0 on the right.
    padding_value = 0
    padding_side = "right"

    def __init__(
        self,
        base_models: Sequence[Mapping[str, Any]],
        preprocessors: Mapping[str, Any],
        max_lengths: Mapping[str, int] | None = None,
    ):
        max_lengths = dict(max_lengths or {})
        #: base model -> the groups its inputs come from (two for a joint model)
        self.groups_of: dict[str, list[str]] = {}
        #: group -> (modality, preprocessor, max_length)
        self.groups: dict[str, tuple[str, Any, int | None]] = {}
        first_of: dict[str, str] = {}
        for entry in base_models:
            name, modality = entry["name"], entry["modality"]
            prep = preprocessors[name]
            if modality == "multimodal":
                parts = {f"{name}-text": ("text", prep.tokenizer), f"{name}-image": ("vision", prep.image_processor)}
            else:
                parts = {name: (modality, prep)}
            self.groups_of[name] = []
            for part, (part_modality, part_prep) in parts.items():
                max_length = int(max_lengths.get(name, 128)) if part_modality == "text" else None
                key = _group_key(part_modality, part_prep, max_length)
                group = first_of.setdefault(key, part)  # a group is named after its first base model (or half)
                self.groups_of[name].append(group)
                self.groups.setdefault(group, (part_modality, part_prep, max_length))

    def __call__(
        self, images: Sequence[Any] | None = None, texts: Sequence[str] | None = None, *, ten_crop: bool = True
    ) -> dict[str, torch.Tensor]:
        """Every group's inputs for a batch of memes (texts padded on the right to the batch's longest).

        Args:
            images: Decoded RGB images (anything the image processors take), one per meme.
            texts: The memes' texts, one per meme.
            ten_crop: Ten crops per image (the paper's inference) or one centre crop.
        """
        out: dict[str, torch.Tensor] = {}
        for group, (modality, prep, max_length) in self.groups.items():
            if modality == "text":
                if texts is None:
                    raise ValueError("this ensemble has text models: pass the memes' texts")
                encoded = prep.pad(
                    encode_texts(prep, list(texts), max_length), padding_side="right", return_tensors="pt"
                )
            else:
                if images is None:
                    raise ValueError("this ensemble has visual models: pass the memes' images")
                encoded = prep(list(images), ten_crop=ten_crop)
            out.update({f"{group}.{key}": value for key, value in encoded.items()})
        return out

    def model_inputs(
        self, batch: Mapping[str, torch.Tensor], name: str, device: torch.device | None = None, dtype=None
    ) -> dict[str, torch.Tensor]:
        """The inputs of base model ``name`` from a (possibly collated) batch, on ``device``; floats in ``dtype``."""
        inputs: dict[str, torch.Tensor] = {}
        for group in self.groups_of[name]:
            modality, prep, _ = self.groups[group]
            prefix = f"{group}."
            found = {key[len(prefix) :]: value for key, value in batch.items() if key.startswith(prefix)}
            if modality == "text" and prep.pad_token_id and "attention_mask" in found:
                found["input_ids"] = found["input_ids"].masked_fill(found["attention_mask"] == 0, prep.pad_token_id)
            inputs.update(found)
        return {
            key: value.to(device=device, dtype=dtype if dtype is not None and value.is_floating_point() else None)
            for key, value in inputs.items()
        }
