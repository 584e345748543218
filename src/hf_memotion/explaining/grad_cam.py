"""Where a visual model looked: Grad-CAM through forward hooks, on any network with a spatial feature map.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a feature map by the mean gradient of a class score over
that channel, sums the weighted channels, keeps the positive part and scales it up to the input. The feature map is
found by forward hooks, not by knowing the network: by default the last ``(N, C, H, W)`` output of any module in
the forward pass (the last stage of a CNN: ``layer4`` of a ResNet, ``conv_head`` of an EfficientNet), or the module
named by ``layer``. So every timm network the library trains is covered without a per-architecture table (what
timm's maintainers asked for in timm #234 and #607). Written here because captum, the standard library for
attributions, pins ``numpy<2`` (captum 0.8), which the rest of the stack has left.

Examples:
    >>> import torch
    >>> from hf_memotion.models.vision import MemotionVisionConfig, MemotionVisionForImageClassification
    >>> model = MemotionVisionForImageClassification(
    ...     MemotionVisionConfig(architecture="test_resnet", problems=["humour"])).eval()
    >>> maps = grad_cam(model, torch.rand(2, 3, 64, 64),
    ...                 lambda out: {"funny": out.problem_logits["humour"][:, 1]})
    >>> maps["funny"].shape, float(maps["funny"].max()) <= 1.0
    ((2, 64, 64), True)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["SpatialActivationError", "grad_cam", "spatial_layer"]


class SpatialActivationError(ValueError):
    """The network has no ``(N, C, H, W)`` activation to explain (or ``layer`` names none)."""


def _is_spatial(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim == 4 and value.shape[-1] * value.shape[-2] > 1


def spatial_layer(model: nn.Module, pixel_values: torch.Tensor) -> str:
    """The name of the module whose output is the forward pass's last ``(N, C, H, W)`` activation.

    Raises:
        SpatialActivationError: When no module outputs one (a transformer's token sequence).
    """
    found: list[str] = []
    thread = threading.get_ident()

    def record(_module, _inputs, output, name: str) -> None:
        if threading.get_ident() == thread and _is_spatial(output):  # not another thread's call of the same model
            found.append(name)

    handles = [
        module.register_forward_hook(functools.partial(record, name=name))
        for name, module in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(pixel_values=pixel_values)
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        raise SpatialActivationError(
            f"{type(model).__name__} has no module with an (N, C, H, W) output; Grad-CAM needs a convolutional "
            "feature map (pass layer=<module name> of one)"
        )
    return found[-1]


def grad_cam(
    model: nn.Module,
    pixel_values: torch.Tensor,
    targets: Callable[[Any], Mapping[str, torch.Tensor]],
    *,
    layer: str | None = None,
) -> dict[str, np.ndarray]:
    """Grad-CAM heat maps of a batch of images for several scores, from one forward pass.

    Args:
        model: A visual model called as ``model(pixel_values=...)``.
        pixel_values: ``(N, 3, H, W)`` preprocessed images, on the model's device.
        targets: Model output -> ``{name: (N,) score tensor}``, e.g. a problem's logit of the class to explain.
        layer: The module (its ``named_modules`` name) whose output is explained; default: :func:`spatial_layer`.

    Returns:
        Name -> ``(N, H, W)`` float32 heat maps, each image's scaled to a maximum of 1 (all zero where no region
        raises the score).

    Raises:
        SpatialActivationError: When ``layer`` names no module, or its output is not ``(N, C, H, W)``.
    """
    name = layer or spatial_layer(model, pixel_values)
    modules = dict(model.named_modules())
    if name not in modules:
        raise SpatialActivationError(f"layer {name!r} is not a module of {type(model).__name__}")
    captured: list[torch.Tensor] = []
    thread = threading.get_ident()

    def capture(_module, _inputs, output) -> None:
        if threading.get_ident() == thread:  # a model shared between threads: only this call's activations
            captured.append(output)

    handle = modules[name].register_forward_hook(capture)
    try:
        with torch.enable_grad():
            inputs = pixel_values.detach().clone().requires_grad_(True)  # so that every activation has a graph
            scores = targets(model(pixel_values=inputs))
            if not captured or not all(_is_spatial(c) for c in captured):
                raise SpatialActivationError(f"layer {name!r} gives no (N, C, H, W) output")
            # a network that splits a batch into calls (``images_per_forward``) gives one output per call
            parts = captured if sum(c.shape[0] for c in captured) == pixel_values.shape[0] else captured[-1:]
            activation = torch.cat([p.detach() for p in parts])
            out = {}
            names = list(scores)
            for i, key in enumerate(names):
                gradients = torch.autograd.grad(scores[key].sum(), parts, retain_graph=i < len(names) - 1)
                gradient = torch.cat(gradients)
                weights = gradient.float().mean(dim=(2, 3), keepdim=True)
                cam = torch.relu((weights * activation.float()).sum(dim=1, keepdim=True))
                cam = nn.functional.interpolate(cam, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
                peak = cam.amax(dim=(1, 2, 3), keepdim=True)
                out[key] = torch.where(peak > 0, cam / peak.clamp_min(1e-12), 0.0)[:, 0].cpu().numpy()
    finally:
        handle.remove()
    return out
