"""fp32 linear layers through oneDNN on a CPU: the kernel path the convolutions already take.

On the CPUs measured here (AMD EPYC, AVX-512) torch's stock fp32 ``nn.Linear`` goes to MKL's sgemm,
which takes a slow path on that processor (about 180 GFLOP/s on 2 cores) while oneDNN's own AVX-512
kernels reach about 420 GFLOP/s for the same BERT-base shapes; the convolutions of the visual
models already run on oneDNN. :func:`use_onednn_linear` routes a module's fp32 linear layers through
oneDNN's linear primitive (``torch.ops.mkldnn._linear_pointwise``, the op ``torch.compile`` emits
for a frozen CPU graph), without compiling: weights stay the module's own parameters (no copy, same
``state_dict``), outputs agree with the stock layer to float rounding, and anything the primitive does
not cover (training with gradients, autocast, bf16/fp16, GPU, an accelerate-offloaded weight) falls
back to the stock ``forward``. Written by hand because no public torch API does this outside
``torch.compile``, whose compile time and recompilation on every new text length a pipeline cannot
afford. ``benchmarks/bench.py`` measures the gain (``pipeline`` section, text backbones).

Examples:
    >>> import torch
    >>> layer = torch.nn.Sequential(torch.nn.Linear(8, 4))
    >>> x = torch.randn(2, 3, 8)
    >>> expected = layer(x)
    >>> use_onednn_linear(layer) == (1 if onednn_linear_available() else 0)
    True
    >>> with torch.inference_mode():
    ...     torch.allclose(layer(x), expected, atol=1e-6)
    True
"""

from __future__ import annotations

from functools import cache

import torch
from torch.utils.flop_counter import register_flop_formula

__all__ = ["OneDNNLinear", "onednn_linear_available", "use_onednn_linear"]


@cache
def onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN and its linear primitive."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


class OneDNNLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose fp32 CPU inference runs on oneDNN (see the module docstring).

    Made by :func:`use_onednn_linear` from an existing layer (its class is switched, its parameters kept).

    Examples:
        >>> layer = torch.nn.Linear(8, 4)
        >>> _ = use_onednn_linear(layer)
        >>> with torch.no_grad():
        ...     layer(torch.ones(2, 8)).shape
        torch.Size([2, 4])
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Run on the oneDNN primitive for fp32 CPU inference, the stock layer otherwise."""
        weight = self.weight
        if (
            input.dtype != torch.float32
            or weight.dtype != torch.float32
            or input.device.type != "cpu"
            or weight.device.type != "cpu"
            or (torch.is_grad_enabled() and (weight.requires_grad or input.requires_grad))
            or torch.is_autocast_enabled("cpu")
        ):
            return super().forward(input)
        return torch.ops.mkldnn._linear_pointwise(input, weight, self.bias, "none", [], "")


def use_onednn_linear(module: torch.nn.Module, enabled: bool = True) -> int:
    """Route every plain ``nn.Linear`` inside ``module`` through oneDNN (``enabled=False`` switches back).

    Layers with accelerate hooks (offloaded or dispatched weights) and quantized layers are left alone.
    Does nothing (returns 0) where :func:`onednn_linear_available` is false.

    Returns:
        How many layers were switched.
    """
    if enabled and not onednn_linear_available():
        return 0
    switched = 0
    for layer in module.modules():
        if enabled and type(layer) is torch.nn.Linear and not hasattr(layer, "_hf_hook"):
            layer.__class__ = OneDNNLinear
            switched += 1
        elif not enabled and type(layer) is OneDNNLinear:
            layer.__class__ = torch.nn.Linear
            switched += 1
    return switched


def _linear_pointwise_flops(input_shape, weight_shape, *args, **kwargs) -> int:
    """2 FLOPs per multiply-add, as ``FlopCounterMode`` counts ``aten.addmm`` (so GFLOP/s figures count it)."""
    rows = 1
    for size in input_shape[:-1]:
        rows *= size
    return 2 * rows * input_shape[-1] * weight_shape[0]


if onednn_linear_available():
    register_flop_formula(torch.ops.mkldnn._linear_pointwise)(_linear_pointwise_flops)
