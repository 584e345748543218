"""PolyNet (Zhang et al., CVPR 2017) as a timm model: ``timm.create_model("polynet")`` after ``import hf_memotion``.

PolyNet is an Inception-ResNet-v2 style network whose residual units are *polynomial*: a poly-3
unit computes ``x + s*F(x) + s*F(F(x)) + s*F(F(F(x)))`` with the convolutions of ``F`` shared and
one BatchNorm per order; a 2-way unit computes ``x + s*F1(x) + s*F2(x)`` with two independent
blocks. The network is a stem, 10 A 2-way units, reduction A, 20 B units (poly-3 and 2-way
alternating), reduction B, 10 C units (alternating likewise), global average pooling, dropout 0.2
and a linear classifier; the residual scale falls linearly from 1.0 to 0.7 over the 40 units, as in
the released ImageNet model (331x331 input, ~95M parameters with 1000 classes).

timm does not ship PolyNet; this module registers it. Parameter names follow the public ImageNet
checkpoint of the ``pretrainedmodels`` package, so :func:`convert_polynet_state_dict` only has to
check and clean it (every key and shape is checked), and timm's own pretrained mechanism loads that
file: ``timm.create_model("polynet", pretrained=True, pretrained_cfg_overlay={"file": "polynet.pth"})``.

Example:
    >>> import timm, torch, hf_memotion  # noqa: F401
    >>> model = timm.create_model("polynet", num_classes=3).eval()
    >>> model(torch.zeros(1, 3, 331, 331)).shape
    torch.Size([1, 3])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["PolyNet", "convert_polynet_state_dict", "polynet"]

_N_UNITS = 40  # 10 A + 20 B + 10 C residual units; the scale of unit k is 1 - k * 0.3 / 39


def _unit_scale(k: int) -> float:
    return round(1.0 - 0.3 * k / (_N_UNITS - 1), 6)


class ConvBN(nn.Module):
    """Convolution (no bias) -> BatchNorm -> optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=False) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _chain(*specs) -> nn.Sequential:
    """A Sequential of ConvBN from ``(cin, cout, kernel[, stride[, padding]])`` tuples."""
    return nn.Sequential(*[ConvBN(*spec) for spec in specs])


class SharedConvBN(nn.Module):
    """A convolution shared by the orders of a poly-N unit, with one BatchNorm per order."""

    def __init__(self, cin: int, cout: int, kernel, orders: int, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding, bias=False)
        self.bn_blocks = nn.ModuleList(nn.BatchNorm2d(cout) for _ in range(orders))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, order: int) -> torch.Tensor:
        return self.relu(self.bn_blocks[order](self.conv(x)))


class Stem(nn.Module):
    """Inception-v4 style stem: 3x331x331 -> 384x35x35."""

    def __init__(self):
        super().__init__()
        self.conv1 = _chain((3, 32, 3, 2), (32, 32, 3), (32, 64, 3, 1, 1))
        self.conv1_pool_branch = nn.MaxPool2d(3, stride=2)
        self.conv1_branch = ConvBN(64, 96, 3, stride=2)
        self.conv2_short = _chain((160, 64, 1), (64, 96, 3))
        self.conv2_long = _chain((160, 64, 1), (64, 64, (7, 1), 1, (3, 0)), (64, 64, (1, 7), 1, (0, 3)), (64, 96, 3))
        self.conv2_pool_branch = nn.MaxPool2d(3, stride=2)
        self.conv2_branch = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = torch.cat([self.conv1_pool_branch(x), self.conv1_branch(x)], 1)
        x = torch.cat([self.conv2_short(x), self.conv2_long(x)], 1)
        return torch.cat([self.conv2_pool_branch(x), self.conv2_branch(x)], 1)


class _Branches(nn.Module):
    """Parallel paths whose outputs are concatenated, then optionally projected by ``conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths = [getattr(self, f"path{i}") for i in range(4) if hasattr(self, f"path{i}")]
        out = torch.cat([path(x) for path in paths], 1)
        return self.conv2d(out) if hasattr(self, "conv2d") else out


class BlockA(_Branches):
    """Inception-ResNet-A residual function (384 channels)."""

    def __init__(self):
        super().__init__()
        self.path0 = _chain((384, 32, 1), (32, 48, 3, 1, 1), (48, 64, 3, 1, 1))
        self.path1 = _chain((384, 32, 1), (32, 32, 3, 1, 1))
        self.path2 = ConvBN(384, 32, 1)
        self.conv2d = ConvBN(128, 384, 1, relu=False)


class BlockB(_Branches):
    """Inception-ResNet-B residual function (1152 channels)."""

    def __init__(self):
        super().__init__()
        self.path0 = _chain((1152, 128, 1), (128, 160, (1, 7), 1, (0, 3)), (160, 192, (7, 1), 1, (3, 0)))
        self.path1 = ConvBN(1152, 192, 1)
        self.conv2d = ConvBN(384, 1152, 1, relu=False)


class BlockC(_Branches):
    """Inception-ResNet-C residual function (2048 channels)."""

    def __init__(self):
        super().__init__()
        self.path0 = _chain((2048, 192, 1), (192, 224, (1, 3), 1, (0, 1)), (224, 256, (3, 1), 1, (1, 0)))
        self.path1 = ConvBN(2048, 192, 1)
        self.conv2d = ConvBN(448, 2048, 1, relu=False)


class ReductionA(_Branches):
    """35x35x384 -> 17x17x1152."""

    def __init__(self):
        super().__init__()
        self.path0 = _chain((384, 256, 1), (256, 256, 3, 1, 1), (256, 384, 3, 2))
        self.path1 = ConvBN(384, 384, 3, stride=2)
        self.path2 = nn.MaxPool2d(3, stride=2)


class ReductionB(_Branches):
    """17x17x1152 -> 8x8x2048 (9x9 at 331 input)."""

    def __init__(self):
        super().__init__()
        self.path0 = _chain((1152, 256, 1), (256, 256, 3, 1, 1), (256, 256, 3, 2))
        self.path1 = _chain((1152, 256, 1), (256, 256, 3, 2))
        self.path2 = _chain((1152, 256, 1), (256, 384, 3, 2))
        self.path3 = nn.MaxPool2d(3, stride=2)


class TwoWay(nn.Module):
    """``relu(x + s*F1(x) + s*F2(x))`` with two independent residual functions."""

    def __init__(self, block: type[nn.Module], scale: float):
        super().__init__()
        self.scale = scale
        self.blocks = nn.ModuleList([block(), block()])
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + sum(self.scale * block(x) for block in self.blocks))


# (input channels, path0 widths and kernels, path1 width, projection input) of the poly-3 B and C units
_POLY_SPECS = {
    "B": (
        1152,
        [(128, 1, 0), (160, (1, 7), (0, 3)), (192, (7, 1), (3, 0))],
        192,
        ("path0_1x1", "path0_1x7", "path0_7x1"),
    ),
    "C": (
        2048,
        [(192, 1, 0), (224, (1, 3), (0, 1)), (256, (3, 1), (1, 0))],
        192,
        ("path0_1x1", "path0_1x3", "path0_3x1"),
    ),
}


class Poly3(nn.Module):
    """``relu(x + s*F(x) + s*F(F(x)) + s*F(F(F(x))))``: convolutions shared across orders, BatchNorms not."""

    def __init__(self, kind: str, scale: float, orders: int = 3):
        super().__init__()
        channels, path0, path1_width, names = _POLY_SPECS[kind]
        self.scale, self.orders, self.names = scale, orders, names
        cin = channels
        for name, (cout, kernel, padding) in zip(names, path0, strict=True):
            setattr(self, name, SharedConvBN(cin, cout, kernel, orders, padding))
            cin = cout
        self.path1 = SharedConvBN(channels, path1_width, 1, orders)
        self.conv2d_blocks = nn.ModuleList(
            ConvBN(path0[-1][0] + path1_width, channels, 1, relu=False) for _ in range(orders)
        )
        self.relu = nn.ReLU()

    def _residual(self, x: torch.Tensor, order: int) -> torch.Tensor:
        branch = x
        for name in self.names:
            branch = getattr(self, name)(branch, order)
        return self.conv2d_blocks[order](torch.cat([branch, self.path1(x, order)], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, term = x, x
        for order in range(self.orders):
            term = self._residual(term, order)
            out = out + self.scale * term
            term = self.relu(term)
        return self.relu(out)


class PolyNet(nn.Module):
    """PolyNet with timm's model interface (``forward_features``, ``forward_head``, ``reset_classifier``).

    Args:
        num_classes: Classifier outputs; 0 returns pooled features.
        in_chans: Only 3 is supported (the stem is fixed).
        drop_rate: Dropout before the classifier (0.2 in the original).
        global_pool: timm pooling type.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, global_pool: str = "avg"):
        super().__init__()
        if in_chans != 3:
            raise ValueError(f"polynet takes 3-channel images, not in_chans={in_chans}")
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = 2048
        self.drop_rate = drop_rate
        self.stem = Stem()
        self.stage_a = nn.Sequential(*[TwoWay(BlockA, _unit_scale(k)) for k in range(10)])
        self.reduction_a = ReductionA()
        self.stage_b = nn.Sequential(
            *[Poly3("B", _unit_scale(k)) if k % 2 == 0 else TwoWay(BlockB, _unit_scale(k)) for k in range(10, 30)]
        )
        self.reduction_b = ReductionB()
        self.stage_c = nn.Sequential(
            *[Poly3("C", _unit_scale(k)) if k % 2 == 0 else TwoWay(BlockC, _unit_scale(k)) for k in range(30, 40)]
        )
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.dropout = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(2048, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            {"num_chs": 384, "reduction": 8, "module": "stage_a"},
            {"num_chs": 1152, "reduction": 16, "module": "stage_b"},
            {"num_chs": 2048, "reduction": 32, "module": "stage_c"},
        ]

    def get_classifier(self) -> nn.Module:
        """The classifier (timm interface)."""
        return self.last_linear

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier, as fine-tuning does (timm interface)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.last_linear = nn.Linear(2048, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled feature map ``(batch, 2048, h, w)``."""
        x = self.stem(x)
        x = self.reduction_a(self.stage_a(x))
        x = self.reduction_b(self.stage_b(x))
        return self.stage_c(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify (or return the pooled features)."""
        x = self.dropout(self.global_pool(x))
        return x if pre_logits else self.last_linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (or pooled features when ``num_classes=0``)."""
        return self.forward_head(self.forward_features(x))


def convert_polynet_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Check the ``pretrainedmodels`` PolyNet ImageNet checkpoint against ``model`` and return its weights.

    Strips a ``module.`` prefix (DataParallel saves); adds the BatchNorm ``num_batches_tracked``
    counters that pre-0.4.1 PyTorch checkpoints lack; drops the 1000-class classifier when ``model``
    has another number of classes (fine-tuning replaces it, as the paper does). Every remaining key
    must exist in ``model`` with the same shape, and every parameter and buffer of ``model`` must be
    provided.

    Raises:
        ValueError: Listing missing keys, unexpected keys and shape mismatches.
    """
    cleaned = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    target = model.state_dict()
    classifier = {"last_linear.weight", "last_linear.bias"}
    if not (classifier <= set(target)):  # a model without a classifier (num_classes=0) or with a new one
        cleaned = {k: v for k, v in cleaned.items() if k not in classifier}
    elif "last_linear.weight" in cleaned and cleaned["last_linear.weight"].shape != target["last_linear.weight"].shape:
        cleaned = {k: v for k, v in cleaned.items() if k not in classifier}
        cleaned.update({k: target[k] for k in classifier})  # keep the fresh classifier
    for key in target:  # checkpoints saved before PyTorch 0.4.1 have no BatchNorm step counters
        if key.endswith("num_batches_tracked") and key not in cleaned:
            cleaned[key] = torch.zeros_like(target[key])
    unexpected = sorted(set(cleaned) - set(target))
    missing = sorted(set(target) - set(cleaned))
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in cleaned.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    if unexpected or missing or mismatched:
        raise ValueError(
            "the state dict does not match PolyNet: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(mismatched)} with another shape (e.g. {mismatched[:3]})"
        )
    return {k: v for k, v in cleaned.items()}


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 331, 331),
        "pool_size": (9, 9),
        "crop_pct": 0.911,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.conv1.0.conv",
        "classifier": "last_linear",
        "license": "see the pretrainedmodels package",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"polynet.imagenet": _cfg()})


@register_model
def polynet(pretrained: bool = False, **kwargs) -> PolyNet:
    """PolyNet for 331x331 ImageNet images (~95M parameters with 1000 classes).

    ``pretrained=True`` loads the ``pretrainedmodels`` ImageNet checkpoint through timm, from a local
    file given as ``pretrained_cfg_overlay={"file": path}``; it is checked and cleaned by
    :func:`convert_polynet_state_dict`.
    """
    return build_model_with_cfg(
        PolyNet, "polynet", pretrained, pretrained_filter_fn=convert_polynet_state_dict, **kwargs
    )
