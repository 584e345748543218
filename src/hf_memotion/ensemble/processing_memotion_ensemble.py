"""The ensemble's processor: memes (images and texts) to every base model's inputs.

Each member reads what its family's :meth:`~hf_memotion.families.ModelFamily.inputs` says (a text, an image, or
both for a joint member: :mod:`hf_memotion.families.inputs`). Inputs that preprocess alike (the same tokenizer and
``max_length``, or the same image processor settings) share one tensor, so a meme is tokenized, resized and cropped
once per distinct preprocessing. Keys are ``"<group>.<input name>"`` (e.g. ``"text.input_ids"``,
``"vision.pixel_values"``; a member reading several inputs names its groups ``"<member>-text"``,
``"<member>-image"``), each with the memes on the first axis: the pipeline pads a batch of single-meme outputs with
transformers' own collate function (``padding_value``/``padding_side`` below), and
:meth:`MemeProcessor.model_inputs` puts each tokenizer's pad id back where that collate function padded with zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hf_memotion.families.inputs import MemberInput

__all__ = ["MemeProcessor"]


class MemeProcessor:
    """Turns memes into the inputs of every base model of an ensemble, one tensor per distinct preprocessing.

    Args:
        inputs: Member name -> the inputs it reads (its family's
            :meth:`~hf_memotion.families.ModelFamily.inputs`), in the ensemble's order.

    Examples:
        >>> from PIL import Image
        >>> from hf_memotion.families import ImageInput, TextInput
        >>> from hf_memotion.models.text.preprocessing import TextFeeding
        >>> from hf_memotion.models.text.tiny import build_tiny_text_backbone
        >>> from hf_memotion.models.vision import MemotionImageProcessor
        >>> _, tokenizer = build_tiny_text_backbone("bert", ["lol nice"], hidden_size=16, num_layers=1)
        >>> processor = MemeProcessor({"bert": [TextInput(tokenizer, TextFeeding(16))],
        ...                            "cnn": [ImageInput(MemotionImageProcessor(crop_size=32))]})
        >>> batch = processor([Image.new("RGB", (40, 30))], ["LOL nice"], ten_crop=True)
        >>> sorted(batch), tuple(batch["cnn.pixel_values"].shape)
        (['bert.attention_mask', 'bert.input_ids', 'cnn.pixel_values'], (1, 10, 3, 32, 32))
    """

    #: Read by transformers' ``pad_collate_fn``: keys it does not know are padded with 0 on the right.
    padding_value = 0
    padding_side = "right"

    def __init__(self, inputs: Mapping[str, Sequence[MemberInput]]):
        #: member -> the groups its inputs come from (two for a joint member)
        self.groups_of: dict[str, list[str]] = {}
        #: group -> its input
        self.groups: dict[str, MemberInput] = {}
        self._inputs = {name: list(parts) for name, parts in inputs.items()}
        first_of: dict[str, str] = {}
        for name, parts in self._inputs.items():
            self.groups_of[name] = []
            for part in parts:
                own = name if len(parts) == 1 else f"{name}-{part.suffix}"
                group = first_of.setdefault(part.group_key(), own)  # named after its first member (or half)
                self.groups_of[name].append(group)
                self.groups.setdefault(group, part)

    def inputs_of(self, name: str) -> list[MemberInput]:
        """The inputs member ``name`` reads."""
        return self._inputs[name]

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
        for group, part in self.groups.items():
            out.update(
                {f"{group}.{key}": value for key, value in part.encode(images, texts, ten_crop=ten_crop).items()}
            )
        return out

    def model_inputs(
        self, batch: Mapping[str, torch.Tensor], name: str, device: torch.device | None = None, dtype=None
    ) -> dict[str, torch.Tensor]:
        """The inputs of base model ``name`` from a (possibly collated) batch, on ``device``; floats in ``dtype``."""
        inputs: dict[str, torch.Tensor] = {}
        for group in self.groups_of[name]:
            prefix = f"{group}."
            found = {key[len(prefix) :]: value for key, value in batch.items() if key.startswith(prefix)}
            inputs.update(self.groups[group].restore(found))
        return {
            key: value.to(device=device, dtype=dtype if dtype is not None and value.is_floating_point() else None)
            for key, value in inputs.items()
        }
