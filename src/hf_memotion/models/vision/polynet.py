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

Examples:
    >>> import timm, torch, hf_memotion  # noqa: F401
    >>> model = timm.create_model("polynet", num_classes=3).eval()
    >>> model(torch.zeros(1, 3, 331, 331)).shape
    torch.Size([1, 3])
"""

from collections.abc import Mapping
from typing import Any

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

__all__ = ["PolyNet", "convert_polynet_state_dict", "polynet"]

_N_UNITS = 40  # 10 A + 20 B + 10 C residual units; the scale of unit k is 1 - k * 0.3 / 39


def _unit_scale(k: int) -> float:
    return round(1.0 - 0.3 * k / (_N_UNITS - 1), 6)


class ConvBN(nn.Module):
    """Convolution (no bias) -> BatchNorm -> optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0, relu: bool = True, dd=None):
        super().__init__()
        dd = dd or {}
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False, **dd)
        self.bn = nn.BatchNorm2d(cout, **dd)
        self.relu = nn.ReLU(inplace=False) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _chain(*specs, dd=None) -> nn.Sequential:
    """A Sequential of ConvBN from ``(cin, cout, kernel[, stride[, padding]])`` tuples."""
    return nn.Sequential(*[ConvBN(*spec, dd=dd) for spec in specs])


class SharedConvBN(nn.Module):
    """A convolution shared by the orders of a poly-N unit, with one BatchNorm per order."""

    def __init__(self, cin: int, cout: int, kernel, orders: int, padding=0, dd=None):
        super().__init__()
        dd = dd or {}
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding, bias=False, **dd)
        self.bn_blocks = nn.ModuleList(nn.BatchNorm2d(cout, **dd) for _ in range(orders))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, order: int) -> torch.Tensor:
        x = self.conv(x)
        for i, bn in enumerate(self.bn_blocks):  # a loop, not bn_blocks[order]: TorchScript indexes by constants
            if i == order:
                x = bn(x)
        return self.relu(x)


class Stem(nn.Module):
    """Inception-v4 style stem: 3x331x331 -> 384x35x35 (``in_chans`` input channels)."""

    def __init__(self, in_chans: int = 3, dd=None):
        super().__init__()
        self.conv1 = _chain((in_chans, 32, 3, 2), (32, 32, 3), (32, 64, 3, 1, 1), dd=dd)
        self.conv1_pool_branch = nn.MaxPool2d(3, stride=2)
        self.conv1_branch = ConvBN(64, 96, 3, stride=2, dd=dd)
        self.conv2_short = _chain((160, 64, 1), (64, 96, 3), dd=dd)
        self.conv2_long = _chain(
            (160, 64, 1), (64, 64, (7, 1), 1, (3, 0)), (64, 64, (1, 7), 1, (0, 3)), (64, 96, 3), dd=dd
        )
        self.conv2_pool_branch = nn.MaxPool2d(3, stride=2)
        self.conv2_branch = ConvBN(192, 192, 3, stride=2, dd=dd)

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """The first convolutions: 64 channels at stride 2 (feature level 0)."""
        return self.conv1(x)

    def second(self, x: torch.Tensor) -> torch.Tensor:
        """Pool and strided convolution, concatenated: 160 channels at stride 4 (feature level 1)."""
        return torch.cat([self.conv1_pool_branch(x), self.conv1_branch(x)], 1)

    def third(self, x: torch.Tensor) -> torch.Tensor:
        """The rest of the stem: 384 channels at stride 8."""
        x = torch.cat([self.conv2_short(x), self.conv2_long(x)], 1)
        return torch.cat([self.conv2_pool_branch(x), self.conv2_branch(x)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.third(self.second(self.first(x)))


class BlockA(nn.Module):
    """Inception-ResNet-A residual function (384 channels)."""

    def __init__(self, dd=None):
        super().__init__()
        self.path0 = _chain((384, 32, 1), (32, 48, 3, 1, 1), (48, 64, 3, 1, 1), dd=dd)
        self.path1 = _chain((384, 32, 1), (32, 32, 3, 1, 1), dd=dd)
        self.path2 = ConvBN(384, 32, 1, dd=dd)
        self.conv2d = ConvBN(128, 384, 1, relu=False, dd=dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(torch.cat([self.path0(x), self.path1(x), self.path2(x)], 1))


class _TwoPathBlock(nn.Module):
    """An Inception-ResNet residual function of two paths (B and C): a 3-convolution path, a 1x1, a projection."""

    def __init__(self, channels: int, path0: tuple, path1_width: int, dd=None):
        super().__init__()
        self.path0 = _chain(*path0, dd=dd)
        self.path1 = ConvBN(channels, path1_width, 1, dd=dd)
        self.conv2d = ConvBN(path0[-1][1] + path1_width, channels, 1, relu=False, dd=dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(torch.cat([self.path0(x), self.path1(x)], 1))


class BlockB(_TwoPathBlock):
    """Inception-ResNet-B residual function (1152 channels)."""

    def __init__(self, dd=None):
        path0 = ((1152, 128, 1), (128, 160, (1, 7), 1, (0, 3)), (160, 192, (7, 1), 1, (3, 0)))
        super().__init__(1152, path0, 192, dd=dd)


class BlockC(_TwoPathBlock):
    """Inception-ResNet-C residual function (2048 channels)."""

    def __init__(self, dd=None):
        path0 = ((2048, 192, 1), (192, 224, (1, 3), 1, (0, 1)), (224, 256, (3, 1), 1, (1, 0)))
        super().__init__(2048, path0, 192, dd=dd)


class ReductionA(nn.Module):
    """35x35x384 -> 17x17x1152."""

    def __init__(self, dd=None):
        super().__init__()
        self.path0 = _chain((384, 256, 1), (256, 256, 3, 1, 1), (256, 384, 3, 2), dd=dd)
        self.path1 = ConvBN(384, 384, 3, stride=2, dd=dd)
        self.path2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.path0(x), self.path1(x), self.path2(x)], 1)


class ReductionB(nn.Module):
    """17x17x1152 -> 8x8x2048 (9x9 at 331 input)."""

    def __init__(self, dd=None):
        super().__init__()
        self.path0 = _chain((1152, 256, 1), (256, 256, 3, 1, 1), (256, 256, 3, 2), dd=dd)
        self.path1 = _chain((1152, 256, 1), (256, 256, 3, 2), dd=dd)
        self.path2 = _chain((1152, 256, 1), (256, 384, 3, 2), dd=dd)
        self.path3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.path0(x), self.path1(x), self.path2(x), self.path3(x)], 1)


class TwoWay(nn.Module):
    """``relu(x + s*F1(x) + s*F2(x))`` with two independent residual functions."""

    def __init__(self, block: type[nn.Module], scale: float, dd=None):
        super().__init__()
        self.scale = scale
        self.blocks = nn.ModuleList([block(dd=dd), block(dd=dd)])
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for block in self.blocks:
            out = out + self.scale * block(x)
        return self.relu(out)


class _Poly3(nn.Module):
    """``relu(x + s*F(x) + s*F(F(x)) + s*F(F(F(x))))``: convolutions shared across orders, BatchNorms not.

    The two kinds (B, C) name their first path's convolutions after their kernels, as the released checkpoint
    does; each subclass spells its path out (TorchScript cannot look attributes up by a variable name).
    """

    def __init__(self, channels: int, path0: list, path1_width: int, names: tuple, scale: float, orders: int, dd):
        super().__init__()
        self.scale, self.orders = scale, orders
        cin = channels
        for name, (cout, kernel, padding) in zip(names, path0, strict=True):
            setattr(self, name, SharedConvBN(cin, cout, kernel, orders, padding, dd=dd))
            cin = cout
        self.path1 = SharedConvBN(channels, path1_width, 1, orders, dd=dd)
        self.conv2d_blocks = nn.ModuleList(
            ConvBN(path0[-1][0] + path1_width, channels, 1, relu=False, dd=dd) for _ in range(orders)
        )
        self.relu = nn.ReLU()

    def _path0(self, x: torch.Tensor, order: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, term = x, x
        for order, project in enumerate(self.conv2d_blocks):
            term = project(torch.cat([self._path0(term, order), self.path1(term, order)], 1))
            out = out + self.scale * term
            term = self.relu(term)
        return self.relu(out)


class Poly3B(_Poly3):
    """The poly-3 unit of stage B (1152 channels)."""

    def __init__(self, scale: float, orders: int = 3, dd=None):
        path0 = [(128, 1, 0), (160, (1, 7), (0, 3)), (192, (7, 1), (3, 0))]
        super().__init__(1152, path0, 192, ("path0_1x1", "path0_1x7", "path0_7x1"), scale, orders, dd)

    def _path0(self, x: torch.Tensor, order: int) -> torch.Tensor:
        return self.path0_7x1(self.path0_1x7(self.path0_1x1(x, order), order), order)


class Poly3C(_Poly3):
    """The poly-3 unit of stage C (2048 channels)."""

    def __init__(self, scale: float, orders: int = 3, dd=None):
        path0 = [(192, 1, 0), (224, (1, 3), (0, 1)), (256, (3, 1), (1, 0))]
        super().__init__(2048, path0, 192, ("path0_1x1", "path0_1x3", "path0_3x1"), scale, orders, dd)

    def _path0(self, x: torch.Tensor, order: int) -> torch.Tensor:
        return self.path0_3x1(self.path0_1x3(self.path0_1x1(x, order), order), order)


class PolyNet(nn.Module):
    """PolyNet with timm's model interface.

    ``forward_features`` / ``forward_head`` / ``reset_classifier``, ``forward_intermediates`` and
    ``prune_intermediate_layers`` over five feature levels (stride 2, 4, 8, 16, 32: the stem's first
    convolutions, its first concatenation, stages A, B and C), ``set_grad_checkpointing`` over the residual
    units, ``features_only=True`` (timm's feature getter), ``device``/``dtype`` factory keywords, TorchScript.

    Args:
        num_classes: Classifier outputs; 0 returns pooled features.
        in_chans: Input channels (the first convolution's; timm adapts pretrained weights to it).
        drop_rate: Dropout before the classifier (0.2 in the original).
        global_pool: timm pooling type; ``""`` keeps the unpooled feature map.
        device: Where the weights are created.
        dtype: Their dtype.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        global_pool: str = "avg",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = self.head_hidden_size = 2048
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.stem = Stem(in_chans, dd=dd)
        self.stage_a = nn.Sequential(*[TwoWay(BlockA, _unit_scale(k), dd=dd) for k in range(10)])
        self.reduction_a = ReductionA(dd=dd)
        self.stage_b = nn.Sequential(
            *[
                Poly3B(_unit_scale(k), dd=dd) if k % 2 == 0 else TwoWay(BlockB, _unit_scale(k), dd=dd)
                for k in range(10, 30)
            ]
        )
        self.reduction_b = ReductionB(dd=dd)
        self.stage_c = nn.Sequential(
            *[
                Poly3C(_unit_scale(k), dd=dd) if k % 2 == 0 else TwoWay(BlockC, _unit_scale(k), dd=dd)
                for k in range(30, 40)
            ]
        )
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.dropout = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(2048, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            {"num_chs": 64, "reduction": 2, "module": "stem.conv1"},
            {"num_chs": 160, "reduction": 4, "module": "stem.conv1_branch"},
            {"num_chs": 384, "reduction": 8, "module": "stage_a"},
            {"num_chs": 1152, "reduction": 16, "module": "stage_b"},
            {"num_chs": 2048, "reduction": 32, "module": "stage_c"},
        ]

    def get_classifier(self) -> nn.Module:
        """The classifier (timm interface)."""
        return self.last_linear

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (and the pooling when given), on the weights' device and dtype (timm interface)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        reference = self.stem.conv1[0].conv.weight
        self.last_linear = (
            nn.Linear(self.num_features, num_classes, device=reference.device, dtype=reference.dtype)
            if num_classes > 0
            else nn.Identity()
        )
        self.global_pool.train(self.training)
        self.last_linear.train(self.training)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the residual units' activations in the backward pass (saves memory; timm interface)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def _stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        return checkpoint_seq(stage, x) if self.grad_checkpointing else stage(x)

    def _levels(self) -> list:
        # (function, index of the feature level it ends, or -1): one entry per step of the network
        return [
            (self.stem.first, 0),
            (self.stem.second, 1),
            (self.stem.third, -1),
            (lambda x: self._stage(self.stage_a, x), 2),
            (self.reduction_a, -1),
            (lambda x: self._stage(self.stage_b, x), 3),
            (self.reduction_b, -1),
            (lambda x: self._stage(self.stage_c, x), 4),
        ]

    @torch.jit.ignore
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature maps of the five levels (or those of ``indices``) along with the final one (timm interface).

        Args:
            x: Images ``(batch, in_chans, H, W)``.
            indices: The last n levels if an int, all if ``None``, the listed ones if a list.
            norm: Unused (PolyNet has no final norm).
            stop_early: Stop after the last level asked for.
            output_fmt: ``"NCHW"`` only.
            intermediates_only: Return only the intermediate maps.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"polynet returns NCHW feature maps, not {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        for step, level in self._levels():
            x = step(x)
            if level in take:
                intermediates.append(x)
            if stop_early and level == max_index:
                break
        if intermediates_only:
            return intermediates
        return x, intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the layers after the last level kept, and the head when asked (timm interface)."""
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        after = {
            0: ["stem.rest", "stage_a", "reduction_a", "stage_b", "reduction_b", "stage_c"],
            1: ["stem.rest", "stage_a", "reduction_a", "stage_b", "reduction_b", "stage_c"],
            2: ["reduction_a", "stage_b", "reduction_b", "stage_c"],
            3: ["reduction_b", "stage_c"],
            4: [],
        }[max_index]
        for name in after:
            if name == "stem.rest":
                for part in ("conv2_short", "conv2_long", "conv2_pool_branch", "conv2_branch"):
                    setattr(self.stem, part, nn.Identity())
                if max_index == 0:
                    self.stem.conv1_pool_branch, self.stem.conv1_branch = nn.Identity(), nn.Identity()
            else:
                setattr(self, name, nn.Identity())
        if max_index < len(self.feature_info) - 1:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or max_index < len(self.feature_info) - 1:
            self.reset_classifier(0, "")
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled feature map ``(batch, 2048, h, w)``."""
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = self.reduction_a(checkpoint_seq(self.stage_a, x))
            x = self.reduction_b(checkpoint_seq(self.stage_b, x))
            return checkpoint_seq(self.stage_c, x)
        x = self.reduction_a(self.stage_a(x))
        x = self.reduction_b(self.stage_b(x))
        return self.stage_c(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify (or return the pooled features)."""
        x = self.dropout(self.global_pool(x))
        return x if pre_logits else self.last_linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (or pooled features when ``num_classes=0``, the map when also ``global_pool=""``)."""
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
        "min_input_size": (3, 139, 139),
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
        PolyNet,
        "polynet",
        pretrained,
        pretrained_filter_fn=convert_polynet_state_dict,
        feature_cfg={"feature_cls": "getter", "out_indices": (0, 1, 2, 3, 4)},
        **kwargs,
    )
