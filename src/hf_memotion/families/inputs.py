"""What a member reads from a meme: its part of the ensemble's processor, and how ONNX Runtime is fed the same.

A family's :meth:`~hf_memotion.families.base.ModelFamily.inputs` gives one :class:`MemberInput` per input its
members read: the textual member a :class:`TextInput` (its tokenizer and ``max_length``), the visual member an
:class:`ImageInput` (its image processor), a joint member both. The ensemble's
:class:`~hf_memotion.ensemble.MemeProcessor` makes each distinct input once per meme (members that preprocess
alike share one tensor), the ONNX export and runtime take the graphs' input names and shapes from them.

Examples:
    >>> from PIL import Image
    >>> from hf_memotion.models.vision import MemotionImageProcessor
    >>> part = ImageInput(MemotionImageProcessor(crop_size=32))
    >>> tuple(part.encode([Image.new("RGB", (40, 30))], None, ten_crop=True)["pixel_values"].shape)
    (1, 10, 3, 32, 32)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from hf_memotion.models.text.preprocessing import TextFeeding, encode_texts

__all__ = ["ImageInput", "MemberInput", "TextInput"]


class MemberInput:
    """One input of a member, made from a batch of memes.

    Attributes:
        suffix: Names the input's group when its member reads several (``"<member>-<suffix>"``).
        onnx_names: The graph inputs it feeds, in order.
        onnx_axes: Their dynamic axes (``{axis: name}``).
        onnx_sizes: The tokens or crops of the exporter's two example batches (traced, then checked).
        static_quantization: Whether ONNX int8 graphs are calibrated on training data (else quantized dynamically).
    """

    suffix: ClassVar[str]
    onnx_names: ClassVar[tuple[str, ...]]
    onnx_axes: ClassVar[dict[int, str]]
    onnx_sizes: ClassVar[tuple[int, int]]
    static_quantization: ClassVar[bool] = False

    def group_key(self) -> str:
        """Equal for two inputs that preprocess alike (they share one tensor)."""
        raise NotImplementedError

    def encode(self, images: Sequence[Any] | None, texts: Sequence[str] | None, *, ten_crop: bool) -> dict:
        """The tensors of a batch of memes, the memes on the first axis."""
        raise NotImplementedError

    def restore(self, found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Undo what a generic collate function did to the tensors (default: nothing)."""
        return found

    def onnx_feed(self, found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors as the exported graph takes them (default: as they are)."""
        return found

    def onnx_examples(self, rows: int, size: int) -> dict[str, torch.Tensor]:
        """Example tensors for the exporter: ``rows`` memes, ``size`` tokens or crops (seeded, deterministic)."""
        raise NotImplementedError


class TextInput(MemberInput):
    """The memes' texts, tokenized and padded on the right as the member's tower was trained (:class:`TextFeeding`).

    Examples:
        >>> from hf_memotion.models.text.tiny import build_tiny_text_backbone
        >>> _, tokenizer = build_tiny_text_backbone("bert", ["lol nice"], hidden_size=16, num_layers=1)
        >>> sorted(TextInput(tokenizer, TextFeeding(16)).encode(None, ["LOL nice", "lol"], ten_crop=False))
        ['attention_mask', 'input_ids']
    """

    suffix = "text"
    onnx_names = ("input_ids", "attention_mask")
    onnx_axes: ClassVar[dict[int, str]] = {0: "batch", 1: "sequence"}
    onnx_sizes = (9, 14)

    def __init__(self, tokenizer: Any, feeding: TextFeeding):
        self.tokenizer = tokenizer
        self.feeding = feeding

    @property
    def max_length(self) -> int:
        """Tokens kept per text."""
        return self.feeding.max_length

    def group_key(self) -> str:
        """The tokenizer's name and vocabulary size, the length and the padding."""
        tokenizer, feeding = self.tokenizer, self.feeding
        return json.dumps(
            {
                "tokenizer": tokenizer.name_or_path,
                "vocab": len(tokenizer),
                "max_length": feeding.max_length,
                "pad_to": feeding.pad_to,
            }
        )

    def encode(self, images: Sequence[Any] | None, texts: Sequence[str] | None, *, ten_crop: bool) -> dict:
        """``input_ids`` and ``attention_mask`` of the texts (``images`` unused)."""
        if texts is None:
            raise ValueError("this ensemble has members that read text: pass the memes' texts")
        return self.feeding.pad(self.tokenizer, encode_texts(self.tokenizer, list(texts), self.max_length))

    def restore(self, found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Put the tokenizer's pad id back where a collate function padded ``input_ids`` with zeros."""
        pad = self.tokenizer.pad_token_id
        if pad and "attention_mask" in found and "input_ids" in found:
            found["input_ids"] = found["input_ids"].masked_fill(found["attention_mask"] == 0, pad)
        return found

    def onnx_examples(self, rows: int, size: int) -> dict[str, torch.Tensor]:
        """Random token ids of ``size`` tokens (at most a fixed-length tower's length), the first row half padded."""
        size = min(size, self.feeding.pad_to or size)
        generator = torch.Generator().manual_seed(rows * 31 + size)
        vocabulary = len(self.tokenizer)
        ids = torch.randint(min(5, vocabulary - 1), vocabulary, (rows, size), generator=generator)
        mask = torch.ones_like(ids)
        mask[0, max(2, size // 2) :] = 0  # one padded row
        return {"input_ids": ids, "attention_mask": mask}


class ImageInput(MemberInput):
    """The memes' images, resized and cropped by an image processor (ten crops per image, or one).

    Examples:
        >>> from hf_memotion.models.vision import MemotionImageProcessor
        >>> ImageInput(MemotionImageProcessor(crop_size=32)).onnx_examples(2, 10)["pixel_values"].shape
        torch.Size([2, 10, 3, 32, 32])
    """

    suffix = "image"
    onnx_names = ("pixel_values",)
    onnx_axes: ClassVar[dict[int, str]] = {0: "batch", 1: "crops"}
    onnx_sizes = (2, 10)
    static_quantization = True  # calibrated on training images, as served (ten crops)

    def __init__(self, processor: Any):
        self.processor = processor

    def group_key(self) -> str:
        """The image processor's settings."""
        return json.dumps(self.processor.to_dict(), sort_keys=True, default=str)

    def encode(self, images: Sequence[Any] | None, texts: Sequence[str] | None, *, ten_crop: bool) -> dict:
        """``pixel_values`` of the images (``texts`` unused): ``(memes, 10, 3, size, size)`` with ten crops."""
        if images is None:
            raise ValueError("this ensemble has members that read images: pass the memes' images")
        return dict(self.processor(list(images), ten_crop=ten_crop))

    def onnx_feed(self, found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One crop per meme gets its crop axis (the graph takes ``(memes, crops, 3, size, size)``)."""
        if found["pixel_values"].ndim == 4:
            found["pixel_values"] = found["pixel_values"][:, None]
        return found

    def onnx_examples(self, rows: int, size: int) -> dict[str, torch.Tensor]:
        """Random images of ``size`` crops each."""
        crop = self.processor.crop_size
        generator = torch.Generator().manual_seed(rows * 31 + size)
        return {"pixel_values": torch.randn(rows, size, 3, crop, crop, generator=generator)}


def input_names(inputs: Sequence[MemberInput]) -> list[str]:
    """Every graph input name of a member's inputs, in order."""
    return [name for part in inputs for name in part.onnx_names]


def feed(inputs: Sequence[MemberInput], found: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A member's tensors as its exported graph takes them."""
    out = dict(found)
    for part in inputs:
        out = part.onnx_feed(out)
    return out
