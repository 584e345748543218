"""Convert the released VisE ResNet-50 checkpoints to a :class:`~hf_memotion.models.vise.ViseModel`.

The released files (``resnet50_1m``, ``resnet50_250m``; CC-BY-NC 4.0) are state dicts of
``torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])``: keys are Sequential
indices, ``0.*`` conv1, ``1.*`` bn1, ``4.*``..``7.*`` layer1..layer4 (``2`` relu and ``3`` maxpool hold
no weights); the output is the ``(B, 2048, 7, 7)`` feature map. timm's ``resnet50`` names the same
modules ``conv1``, ``bn1``, ``layer1``..``layer4`` with identical inner names, so conversion is a
renaming checked key by key and shape by shape.

Examples:
    >>> rename_released_key("5.0.downsample.0.weight")
    'layer2.0.downsample.0.weight'
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from hf_memotion.models.timm_backbone import pooled_width
from hf_memotion.models.vise.configuration_vise import ViseConfig
from hf_memotion.models.vise.modeling_vise import ViseModel

__all__ = [
    "CheckpointMismatchError",
    "convert_released_checkpoint",
    "load_released_state_dict",
    "rename_released_key",
    "save_converted_checkpoint",
    "to_released_state_dict",
]

_PREFIXES = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_INDICES = {name: index for index, name in _PREFIXES.items()}


class CheckpointMismatchError(ValueError):
    """A checkpoint does not have the released VisE layout; the message lists what differs."""


def rename_released_key(key: str) -> str:
    """The timm name of a released checkpoint's key."""
    index, _, rest = key.partition(".")
    if index not in _PREFIXES or not rest:
        raise CheckpointMismatchError(f"unexpected key {key!r}: released VisE keys start with {sorted(_PREFIXES)}")
    return f"{_PREFIXES[index]}.{rest}"


def load_released_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a released ``.pth`` with ``torch.load(weights_only=True)`` (tensors only; no code runs)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file (the released resnet50_1m / resnet50_250m .pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointMismatchError(
            f"{path} is not a tensors-only PyTorch checkpoint ({type(err).__name__}: {reason})"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_released_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> ViseModel:
    """A :class:`ViseModel` (timm ``resnet50``) holding a released VisE state dict, every key and shape checked.

    Raises:
        CheckpointMismatchError: Missing, unexpected or differently shaped tensors (all listed).
    """
    model = ViseModel(ViseConfig(architecture="resnet50")).eval()
    expected = model.timm_model.state_dict()
    renamed = {rename_released_key(k): v for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    shapes = [
        f"{k}: {tuple(renamed[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in renamed and renamed[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"not a released VisE ResNet-50 state dict: missing {missing[:10]} ({len(missing)}), unexpected "
            f"{unexpected[:10]} ({len(unexpected)}), shape mismatches {shapes[:10]}"
        )
    model.timm_model.load_state_dict(renamed, strict=True)
    return model


def to_released_state_dict(model: ViseModel) -> dict[str, torch.Tensor]:
    """The inverse of :func:`convert_released_checkpoint`: a ResNet-50 ``ViseModel``'s weights in the released layout.

    Converting a released state dict and back gives the same keys and bit-identical tensors.
    """
    out = {}
    for key, value in model.timm_model.state_dict().items():
        prefix, _, rest = key.partition(".")
        if prefix not in _INDICES:
            raise CheckpointMismatchError(f"{key!r} has no place in the released layout (only conv1, bn1, layer1..4)")
        out[f"{_INDICES[prefix]}.{rest}"] = value
    return out


def save_converted_checkpoint(
    path: str | os.PathLike, output_dir: str | os.PathLike, *, model_id: str | None = None
) -> ViseModel:
    """Convert a released ``.pth`` into a folder ``AutoModel.from_pretrained`` loads, with its processor and card.

    The card carries the CC-BY-NC 4.0 license of the released weights.
    """
    from pathlib import Path

    from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor

    model = convert_released_checkpoint(load_released_state_dict(path))
    model.card_data.update(
        origin="released",
        architecture="resnet50",
        num_features=pooled_width(model.timm_model),
        checkpoint=Path(path).name,
    )
    model.card_data.model_id = model_id
    folder = Path(output_dir)
    model.save_pretrained(folder)
    MemotionImageProcessor.from_timm("resnet50", ten_crop=False).save_pretrained(folder)
    return model
