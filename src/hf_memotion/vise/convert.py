"""Convert the released VisE ResNet-50 checkpoints to a :class:`~hf_memotion.vise.ViseModel`.

The released files (``resnet50_1m``, ``resnet50_250m``; CC-BY-NC 4.0) are state dicts of
``torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])``: keys are Sequential
indices, ``0.*`` conv1, ``1.*`` bn1, ``4.*``..``7.*`` layer1..layer4 (``2`` relu and ``3`` maxpool hold
no weights); the output is the ``(B, 2048, 7, 7)`` feature map. timm's ``resnet50`` names the same
modules ``conv1``, ``bn1``, ``layer1``..``layer4`` with identical inner names, so conversion is a
renaming checked key by key and shape by shape.

Example:
    >>> rename_released_key("5.0.downsample.0.weight")
    'layer2.0.downsample.0.weight'
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from hf_memotion.vise.configuration_vise import ViseConfig
from hf_memotion.vise.modeling_vise import ViseModel

__all__ = ["CheckpointMismatchError", "convert_released_checkpoint", "load_released_state_dict", "rename_released_key"]

_PREFIXES = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


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
    state = torch.load(path, map_location="cpu", weights_only=True)
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
    shapes = [f"{k}: {tuple(renamed[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in renamed and renamed[k].shape != v.shape]  # fmt: skip
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"not a released VisE ResNet-50 state dict: missing {missing[:10]} ({len(missing)}), unexpected "
            f"{unexpected[:10]} ({len(unexpected)}), shape mismatches {shapes[:10]}"
        )
    model.timm_model.load_state_dict(renamed, strict=True)
    return model
