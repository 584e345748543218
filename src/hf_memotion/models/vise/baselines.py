"""The VisE paper's baseline backbones (its Tables 6 and 7) from their public checkpoints, as ``ViseModel``s.

Each baseline is a kind of evaluation backbone (``<kind>:<file or Hub tag>`` in an evaluation config) with a
converter from its released layout to timm's, every key and shape checked (the first mismatch named in one line),
no pickle executed (``torch.load(weights_only=True)`` or safetensors; a TorchScript archive is refused, since
loading one runs its code):

- ``moco`` (timm ``resnet50``): MoCo-v2's ``*.pth.tar``, ``{"state_dict": {"module.encoder_q.<torchvision
  ResNet-50>"}}``; the projection MLP (``fc.0``, ``fc.2``) is dropped, as MoCo's own linear evaluation does.
- ``virtex`` (``resnet50``): VirTex's checkpoints, ``{"model": {"visual.cnn.<torchvision ResNet-50>", ...}}`` (the
  textual head dropped), or its torch.hub backbone (a torchvision state dict without ``fc``).
- ``icmlm`` (``resnet50``): a torchvision ResNet-50 state dict, possibly under ``state_dict`` / ``model`` and a module
  prefix. ICMLM's release (on its project site) could not be read from here: its exact layout is unverified, and
  the prefixes tried are named in the error.
- ``vqagrid`` (``resnet50_d2``): grid-feats-vqa's detectron2 R-50, ``{"model": {"backbone.stem.*",
  "backbone.res2.*", ...}}``: Caffe2-style blocks (the stride in the first 1x1 convolution: ``resnet50_d2``,
  registered with timm here), ``res5`` undilated as grid-feats-vqa extracts its features (its
  ``extract_grid_feature.py`` sets ``RES5_DILATION = 1`` over the training config's 2; the weights are the same),
  BGR input in 0-255 less the pixel means (the first convolution's input channels are reversed and the processor's
  statistics set so that the network sees what detectron2 fed it).
- ``clip`` (``resnet50_clip``): CLIP's modified ResNet-50, timm's ``resnet50_clip.openai`` by its Hub tag, or a file
  holding an OpenAI-layout (``visual.*``, as ``open_clip`` saves it) or timm-layout state dict, converted by timm's
  own filter. The features are CLIP's image embedding, what its ``encode_image`` returns and its linear-probe code
  reads: the attention pool with its output projection (``attnpool.c_proj``, 1024 outputs for RN50; the width is
  timm's for the architecture). OpenAI's ``RN50.pt`` is a TorchScript archive and is refused.

Examples:
    >>> import torch
    >>> network = ViseModel(ViseConfig(architecture="resnet18")).timm_model.state_dict()
    >>> released = {"state_dict": {f"module.encoder_q.{k}": v for k, v in network.items()}}
    >>> converted = convert_baseline("moco", released, architecture="resnet18")
    >>> all(torch.equal(converted[k], v) for k, v in network.items())
    True
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import Bottleneck, ResNet

from hf_memotion.models.vise.configuration_vise import ViseConfig
from hf_memotion.models.vise.convert import CheckpointMismatchError
from hf_memotion.models.vise.modeling_vise import ViseModel

__all__ = [
    "BASELINE_KINDS",
    "CLIP_BASE_LEARNING_RATES",
    "UNVERIFIED_LAYOUTS",
    "BaselineLayout",
    "baseline_layout",
    "convert_baseline",
    "load_baseline",
    "read_checkpoint",
]

#: The baseline kinds, in the order of the paper's tables.
BASELINE_KINDS = ("vqagrid", "virtex", "icmlm", "moco", "clip")
#: Where a torchvision ResNet state dict may sit in a checkpoint (ICMLM's, whose layout is a guess over these).
_TORCHVISION_PREFIXES = ("module.", "cnn.", "visual.", "visual_encoder.", "image_encoder.", "backbone.", "encoder.")
#: Baseline kinds whose released layout could not be checked against the release's own files, and why: their
#: rows are marked unverified in an evaluation's plan and report.
UNVERIFIED_LAYOUTS = {
    "icmlm": (
        "ICMLM's checkpoints (europe.naverlabs.com/icmlm) could not be read from here, so their key layout is "
        "unverified: the converter takes a torchvision ResNet-50 state dict under state_dict/model and the prefixes "
        + ", ".join(_TORCHVISION_PREFIXES)
    ),
}
#: The paper's wider base learning-rate grid for CLIP (Appendix C.3), against the others' {0.025, 0.0025, 0.00025}.
CLIP_BASE_LEARNING_RATES = (0.025, 0.0025, 0.00025, 0.000025, 0.0000025)
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
#: detectron2's PIXEL_MEAN for its MSRA ImageNet models, in RGB order, over a 0-255 input with PIXEL_STD 1.
_DETECTRON2 = (tuple(v / 255 for v in (123.675, 116.28, 103.53)), (1 / 255, 1 / 255, 1 / 255))


@dataclass(frozen=True)
class BaselineLayout:
    """What a baseline kind becomes: its timm network and the normalisation its checkpoint was trained with.

    Attributes:
        architecture: The timm architecture.
        model_args: Its ``timm.create_model`` keywords.
        mean: Per-channel normalisation mean (RGB).
        std: Per-channel normalisation standard deviation.
        base_learning_rates: The paper's base learning-rate grid for it, where it is not the common one.
        embedding_size: The network's own output layer kept as its features (CLIP's image embedding), or ``None``.
    """

    architecture: str
    model_args: dict[str, Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    base_learning_rates: tuple[float, ...] | None = None
    embedding_size: int | None = None

    def config(self, architecture: str | None = None) -> ViseConfig:
        """The :class:`ViseConfig` of this layout's network (``architecture``: a timm tag of it instead)."""
        return ViseConfig(
            architecture=architecture or self.architecture,
            model_args=self.model_args,
            embedding_size=self.embedding_size,
        )


def baseline_layout(kind: str, architecture: str | None = None) -> BaselineLayout:
    """The :class:`BaselineLayout` of a baseline kind (``architecture`` overrides the paper's ResNet-50).

    Examples:
        >>> baseline_layout("vqagrid").architecture, baseline_layout("vqagrid").model_args
        ('resnet50_d2', {})
    """
    if kind not in BASELINE_KINDS:
        raise ValueError(f"unknown baseline kind {kind!r}; one of {BASELINE_KINDS}")
    if kind == "vqagrid":
        return BaselineLayout(architecture or "resnet50_d2", {}, *_DETECTRON2)
    if kind == "clip":
        architecture = architecture or "resnet50_clip"
        return BaselineLayout(architecture, {}, *_CLIP, CLIP_BASE_LEARNING_RATES, _clip_embedding_size(architecture))
    return BaselineLayout(architecture or "resnet50", {}, *_IMAGENET)


def _clip_embedding_size(architecture: str) -> int:
    """The width of CLIP's image embedding for a timm CLIP ResNet: its OpenAI weights' output layer."""
    import timm

    pretrained = timm.models.get_pretrained_cfg(architecture)
    if pretrained is None or not pretrained.num_classes:
        raise ValueError(
            f"{architecture!r} is not one of timm's CLIP ResNets (resnet50_clip, resnet101_clip, resnet50x4_clip, ...)"
        )
    return int(pretrained.num_classes)


# ----------------------------------------------------------------------------------------- detectron2's ResNet


class StrideIn1x1Bottleneck(Bottleneck):
    """timm's bottleneck with the stride in its first 1x1 convolution, as Caffe2 and detectron2 (``STRIDE_IN_1X1``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.conv1.stride, self.conv2.stride = self.conv2.stride, (1, 1)


default_cfgs = generate_default_cfgs(
    {
        "resnet50_d2.untrained": {
            "url": "",
            "num_classes": 1000,
            "input_size": (3, 224, 224),
            "pool_size": (7, 7),
            "crop_pct": 0.875,
            "interpolation": "bilinear",
            "mean": _DETECTRON2[0],
            "std": _DETECTRON2[1],
            "first_conv": "conv1",
            "classifier": "fc",
        }
    }
)


@register_model
def resnet50_d2(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 with detectron2's (Caffe2's) bottlenecks: the stride in the first 1x1 convolution of a block.

    The network grid-feats-vqa's VQA grid features come from (extracted undilated); ``output_stride=16`` dilates its
    last stage as its detector was trained (``RES5_DILATION: 2``).
    """
    model = build_model_with_cfg(
        ResNet, "resnet50_d2", pretrained, block=StrideIn1x1Bottleneck, layers=(3, 4, 6, 3), **kwargs
    )
    first, second = model.layer4[0].conv2, model.layer4[1].conv2
    if second.dilation != (1, 1):  # detectron2 dilates every block of a dilated stage, its first one included
        first.dilation, first.padding = second.dilation, second.padding
    return model


_D2_RENAMES = (("conv1.norm.", "bn1."), ("conv2.norm.", "bn2."), ("conv3.norm.", "bn3."))


def _from_detectron2(key: str) -> str:
    """A detectron2 ResNet key (``backbone.`` removed) in torchvision's and timm's names."""
    if key.startswith("stem."):
        return key.removeprefix("stem.").replace("conv1.norm.", "bn1.")
    stage, _, rest = key.partition(".")
    if not stage.startswith("res") or not stage[3:].isdigit():
        raise CheckpointMismatchError(f"unexpected key {key!r}: detectron2 ResNet keys start with stem. or res2..res5")
    rest = rest.replace("shortcut.norm.", "downsample.1.").replace("shortcut.", "downsample.0.")
    for old, new in _D2_RENAMES:
        rest = rest.replace(old, new)
    return f"layer{int(stage[3:]) - 1}.{rest}"


# --------------------------------------------------------------------------------------------------- reading


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def read_checkpoint(path: str | os.PathLike) -> Mapping[str, Any]:
    """Read a checkpoint with no code run: safetensors, or ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: No such file.
        CheckpointMismatchError: A TorchScript archive, or a file that is not tensors only (one line each).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    if _is_torchscript(path):
        raise CheckpointMismatchError(
            f"{path} is a TorchScript archive (OpenAI's CLIP .pt files are): loading it runs its code, so it is "
            "refused; use timm's safetensors weights (clip:resnet50_clip.openai) or a state dict saved with "
            "open_clip (model.state_dict() to safetensors)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointMismatchError(
            f"{path} is not a tensors-only PyTorch checkpoint ({type(err).__name__}: {reason[:200]})"
        ) from None


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CheckpointMismatchError(f"{path} holds no state dict (a {type(value).__name__})")
    return value


def _strip(state: Mapping[str, Any], prefix: str, kind: str, layout: str) -> dict[str, Any]:
    kept = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if not kept:
        first = next(iter(state), "nothing")
        raise CheckpointMismatchError(
            f"not a {kind} checkpoint: no key starts with {prefix!r} ({layout}; found {first!r})"
        )
    return kept


def _torchvision_keys(state: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Find a torchvision ResNet state dict under known wrappers and prefixes (ICMLM's layout is unverified)."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    prefixes = _TORCHVISION_PREFIXES
    for _ in range(3):
        if any(k.startswith(("conv1.", "layer1.")) for k in state):
            return dict(state)
        found = next((p for p in prefixes if any(k.startswith(p) for k in state)), None)
        if found is None:
            break
        state = {k.removeprefix(found): v for k, v in state.items() if k.startswith(found)}
    first = next(iter(state), "nothing")
    raise CheckpointMismatchError(
        f"not a {kind} checkpoint: no torchvision ResNet keys (conv1., layer1.) under state_dict/model and the "
        f"prefixes {list(prefixes)} (found {first!r})"
    )


def convert_baseline(
    kind: str,
    checkpoint: Mapping[str, Any],
    *,
    architecture: str | None = None,
    network: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """A released checkpoint of ``kind`` in timm's layout for its :func:`baseline_layout`, every key and shape checked.

    Args:
        kind: One of :data:`BASELINE_KINDS`.
        checkpoint: What :func:`read_checkpoint` read.
        architecture: Another timm network of the same layout than the paper's.
        network: The timm network the weights are for (default: built from the layout); its keys and shapes are
            what the checkpoint is checked against.

    Raises:
        CheckpointMismatchError: Not that kind's layout, or a missing, unexpected or differently shaped tensor (the
            first named).
    """
    if network is None:
        layout = baseline_layout(kind, architecture)
        network = ViseModel(layout.config()).timm_model
    state = _mapping(checkpoint, kind)
    if kind == "moco":
        encoder = _mapping(state.get("state_dict", state), kind)
        state = _strip(encoder, "module.encoder_q.", kind, "MoCo's query encoder")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the projection MLP
    elif kind == "virtex":
        if isinstance(state.get("model"), Mapping):
            state = _strip(state["model"], "visual.cnn.", kind, "VirTex's visual backbone")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    elif kind == "icmlm":
        state = {k: v for k, v in _torchvision_keys(state, kind).items() if not k.startswith("fc.")}
    elif kind == "vqagrid":
        state = _strip(_mapping(state.get("model", state), kind), "backbone.", kind, "a detectron2 model's backbone")
        state = {_from_detectron2(k): v for k, v in state.items()}
        if "conv1.weight" in state:  # detectron2 read BGR: the first convolution's input channels reversed
            state["conv1.weight"] = state["conv1.weight"].flip(1)
        for key in [k for k in state if k.endswith(".running_var")]:  # FrozenBN has no step count
            state.setdefault(key.replace("running_var", "num_batches_tracked"), torch.tensor(0))
    elif kind == "clip" and any(k.startswith("visual.") for k in state):
        from timm.models.byobnet import checkpoint_filter_fn

        state = checkpoint_filter_fn(dict(state), network)  # timm's own OpenAI-layout conversion
    expected = network.state_dict()
    _check(state, expected, kind)
    return {k: state[k] for k in expected}


def _check(state: Mapping[str, Any], expected: Mapping[str, torch.Tensor], kind: str) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k not in missing and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        if missing:
            first = f"missing {missing[0]!r}"
        elif unexpected:
            first = f"unexpected {unexpected[0]!r}"
        else:
            first = f"{shapes[0]!r} is {tuple(state[shapes[0]].shape)}, expected {tuple(expected[shapes[0]].shape)}"
        raise CheckpointMismatchError(
            f"not a {kind} ResNet checkpoint: {first} ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(shapes)} of another shape)"
        )


def load_baseline(
    kind: str, source: str | os.PathLike, *, architecture: str | None = None
) -> tuple[ViseModel, BaselineLayout]:
    """A :class:`ViseModel` holding a baseline's weights from a file (or, for ``clip``, a timm Hub tag).

    Args:
        kind: One of :data:`BASELINE_KINDS`.
        source: The released checkpoint file; for ``clip`` also timm's tag (``resnet50_clip.openai``).
        architecture: Another timm network of the same layout than the paper's (``resnet101`` for MoCo's R-101).
    """
    layout = baseline_layout(kind, architecture)
    model = ViseModel(layout.config()).eval()
    if kind == "clip" and not Path(source).exists() and not str(source).endswith((".pth", ".pt", ".safetensors")):
        from hf_memotion.models.timm_backbone import create_timm_model

        tag = str(source)
        if tag.split(".")[0] != layout.architecture:
            raise ValueError(
                f"clip:{tag}: give timm's tag of {layout.architecture} (clip:resnet50_clip.openai) or a file"
            )
        weights = create_timm_model(layout.config(tag), pretrained=True).state_dict()
    else:
        weights = convert_baseline(kind, read_checkpoint(source), network=model.timm_model)
    model.timm_model.load_state_dict(weights, strict=True)
    return model, layout
