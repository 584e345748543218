"""The one timm backbone wrapper of the Memotion visual classifier and the VisE models.

Like transformers' ``TimmWrapper`` (whose model classes do not fit here: their heads are timm's single
classifier, ours one head per problem or VisE's engagement heads), a network is named by a timm
``architecture`` plus ``model_args`` for ``timm.create_model``, built with ``num_classes=0`` (or, with
``embedding_size``, keeping the network's own output layer: CLIP's attention-pool projection) and held as
``timm_model``. :class:`TimmBackboneConfig` holds those two fields (``MemotionVisionConfig`` and ``ViseConfig``
extend it); :class:`TimmBackboneMixin` gives a ``PreTrainedModel`` what it needs around the network:

- ``backbone_features(pixel_values, output_hidden_states)``: the unpooled feature map, the pooled features and,
  when asked, timm's per-stage feature maps (``forward_intermediates``; a list of indices selects stages);
- weight initialisation that keeps timm's own at construction and fills everything on the meta device
  (``from_pretrained``'s missing keys, BatchNorm statistics, the heads' class weights);
- gradient checkpointing through timm's ``set_grad_checkpointing``; channels-last and chunked inference;
- no token embeddings (``get_input_embeddings()`` is ``None``).

Examples:
    >>> import torch
    >>> from hf_memotion.models.vision import MemotionVisionModel, MemotionVisionConfig
    >>> model = MemotionVisionModel(MemotionVisionConfig(architecture="test_resnet")).eval()
    >>> out = model(torch.zeros(1, 3, 64, 64), output_hidden_states=True)
    >>> out.pooler_output.shape[0], len(out.hidden_states)
    (1, 5)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import timm
import torch
from torch import nn
from transformers import PretrainedConfig

from hf_memotion.models.heads import ProblemHeads

__all__ = [
    "CPU_IMAGES_PER_FORWARD",
    "MAX_EMBEDDING_SIZE",
    "REFUSED_MODEL_ARGS",
    "TimmBackboneConfig",
    "TimmBackboneMixin",
    "check_model_args",
    "create_timm_model",
    "pooled_width",
]

#: The widest output layer a config may keep (``embedding_size``): wider than any public image embedding.
MAX_EMBEDDING_SIZE = 65536
#: fp32 images per network call at inference on a CPU (``inference_chunk_size="auto"``), from ``benchmarks/bench.py``;
#: 2-byte dtypes (bf16) take twice as many, the same bytes per call (ResNet-50 bf16, 80 crops: 1.11 s at 8 per
#: call, 1.20 s at 4; 8 to 20 were alike within this machine's noise).
CPU_IMAGES_PER_FORWARD = 4


class TimmBackboneConfig(PretrainedConfig):
    """A timm network by name: ``architecture`` and ``model_args`` (the fields of transformers' ``TimmWrapperConfig``).

    Attributes:
        architecture: A timm model name (``"resnet50"``, ``"polynet"`` after ``import hf_memotion``, ...).
        model_args: Extra ``timm.create_model`` keyword arguments (e.g. ``{"drop_path_rate": 0.1}``).
        embedding_size: Keep the network's own output layer, with this many outputs, and pool through it: CLIP's
            ResNets end in an attention pool whose projection gives the image embedding (1024 for RN50), what
            CLIP's ``encode_image`` returns. ``None`` (the default): timm's pooled features, before any classifier.

    Examples:
        >>> TimmBackboneConfig(architecture="test_resnet", model_args={"drop_rate": 0.1}).model_args
        {'drop_rate': 0.1}
    """

    model_type = "memotion_timm_backbone"
    architecture: str = "resnet50"
    model_args: dict[str, Any] | None = None
    embedding_size: int | None = None

    def __post_init__(self, **kwargs: Any):
        super().__post_init__(**kwargs)
        if not isinstance(self.architecture, str):
            raise ValueError(f"architecture must be a timm model name (a string), got {self.architecture!r}")
        if self.model_args is not None and not isinstance(self.model_args, dict):
            raise ValueError(f"model_args must be a mapping of timm.create_model keywords, got {self.model_args!r}")
        if not timm.is_model(self.architecture):
            raise ValueError(
                f"{self.architecture!r} is not a timm architecture of timm {timm.__version__} (after `import "
                "hf_memotion`, which adds 'polynet'); see timm.list_models(), or upgrade with `pip install -U timm`"
            )
        self.model_args = dict(self.model_args or {})
        check_model_args(self.model_args)
        if self.embedding_size is not None and (
            isinstance(self.embedding_size, bool)
            or not isinstance(self.embedding_size, int)
            or not 1 <= self.embedding_size <= MAX_EMBEDDING_SIZE
        ):
            raise ValueError(
                f"embedding_size must be a whole number of outputs from 1 to {MAX_EMBEDDING_SIZE} (or null for "
                f"timm's pooled features), got {self.embedding_size!r}"
            )


#: ``timm.create_model`` keywords a config may not carry: they would fetch or read weights while a saved folder
#: loads (``pretrained``, a ``pretrained_cfg`` with a URL or file, a checkpoint path), or change what the wrapper
#: builds. Pretrained weights are asked for at build time (``from_timm``, ``from_vise``), never by a folder.
REFUSED_MODEL_ARGS = frozenset(
    {
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "pretrained_strict",
        "checkpoint_path",
        "cache_dir",
        "num_classes",
        "features_only",
        "out_indices",
        "feature_cls",
        "scriptable",
        "exportable",
        "no_jit",
    }
)


_PATH_STARTS = ("/", "~", "./", "../")
_WEIGHT_SUFFIXES = (".pth", ".safetensors", ".bin", ".pt", ".ckpt", ".npz", ".h5")


def check_model_args(model_args: dict[str, Any]) -> None:
    """Refuse ``model_args`` that could download or read a file, or that the wrapper manages itself.

    Raises:
        ValueError: Naming the key (and the fix). Strings that look like URLs or paths are refused anywhere in the
            value (a nested dict included).

    Examples:
        >>> check_model_args({"drop_path_rate": 0.1})
        >>> check_model_args({"pretrained": True})
        Traceback (most recent call last):
        ValueError: model_args must not set 'pretrained': ...
    """
    for key, value in model_args.items():
        if key in REFUSED_MODEL_ARGS:
            raise ValueError(
                f"model_args must not set {key!r}: a saved folder never downloads or reads weights on loading, and "
                "the heads replace timm's classifier; ask for pretrained weights when building "
                "(MemotionVisionForImageClassification.from_timm / from_vise)"
            )
        for text in _strings(value):
            if "://" in text or text.startswith(_PATH_STARTS) or text.endswith(_WEIGHT_SUFFIXES):
                raise ValueError(f"model_args[{key!r}] holds a URL or file path ({text!r}): refused on loading")


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def create_timm_model(config: TimmBackboneConfig, **overrides: Any) -> nn.Module:
    """``timm.create_model(config.architecture, num_classes=0, **config.model_args)``, timm's init marked as done.

    With ``config.embedding_size`` the network keeps its own output layer (``num_classes=embedding_size``).

    Off the meta device, timm has initialised the network: its tensors are flagged so that transformers'
    ``init_weights`` (run by ``post_init``) keeps them. On the meta device (``from_pretrained``) nothing is
    flagged, and the loader's missing keys get :meth:`TimmBackboneMixin._init_weights`.
    """
    try:
        outputs = getattr(config, "embedding_size", None) or 0
        model = timm.create_model(config.architecture, num_classes=outputs, **{**config.model_args, **overrides})
    except TypeError as err:
        raise TypeError(
            f"timm.create_model({config.architecture!r}) refused model_args {config.model_args}: {err}"
        ) from None
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device.type != "meta":
            tensor._is_hf_initialized = True
    return model


def pooled_width(network: nn.Module) -> int:
    """How many pooled features a network built by :func:`create_timm_model` gives per image.

    Examples:
        >>> pooled_width(create_timm_model(TimmBackboneConfig(architecture="test_resnet")))
        96
        >>> pooled_width(create_timm_model(TimmBackboneConfig(architecture="test_resnet", embedding_size=32)))
        32
    """
    return int(getattr(network, "num_classes", 0) or network.num_features)


def _flatten_crops(pixel_values: torch.Tensor | None) -> tuple[torch.Tensor, int | None]:
    if pixel_values is None:
        raise ValueError("pass pixel_values: run the images through the model's MemotionImageProcessor first")
    if pixel_values.ndim == 5:
        batch, crops = pixel_values.shape[:2]
        return pixel_values.reshape(batch * crops, *pixel_values.shape[2:]), crops
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must be (batch, 3, H, W) or (batch, crops, 3, H, W), got shape {tuple(pixel_values.shape)}"
        )
    return pixel_values, None


class TimmBackboneMixin:
    """What a ``PreTrainedModel`` around a timm network (``self.timm_model`` or a sub-model's) shares.

    Subclasses set ``timm_owner`` when the network lives in a sub-model (VisE heads: ``"vise"``).
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    #: Attribute of the sub-model holding ``timm_model`` (``None``: the model itself).
    timm_owner: str | None = None
    #: Feed the network NHWC tensors (set by :meth:`to_channels_last`).
    channels_last = False
    #: At inference, run at most this many images (crops) per network call: ``"auto"`` (4 on a CPU, all at
    #: once on a GPU), a number, or ``None`` (all at once).
    inference_chunk_size: int | str | None = "auto"

    @property
    def network(self) -> nn.Module:
        """The timm network."""
        owner = getattr(self, self.timm_owner) if self.timm_owner else self
        return owner.timm_model

    def get_input_embeddings(self) -> None:
        """Images have no token embeddings (as in transformers' ``TimmWrapper``)."""
        return None

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Refused: a timm network has no token embeddings."""
        raise NotImplementedError(f"{type(self).__name__} reads images: it has no token embeddings to set")

    def _set_gradient_checkpointing(self, enable: bool = True, *args: Any, **kwargs: Any) -> None:
        if not hasattr(self.network, "set_grad_checkpointing"):
            raise ValueError(f"timm's {self.config.architecture} does not support gradient checkpointing")
        self.network.set_grad_checkpointing(enable)
        self.gradient_checkpointing = enable  # what transformers' is_activation_checkpointing reads

    def _init_weights(self, module: nn.Module) -> None:
        """Transformers' initialisation for what is not initialised yet (see :func:`create_timm_model`).

        timm's own initialisation is kept at construction (its tensors are flagged); on the meta device the
        network's missing tensors get transformers' defaults (normal weights, unit/zero BatchNorm and running
        statistics), the heads a normal initialisation and their class weights.
        """
        super()._init_weights(module)
        if isinstance(module, ProblemHeads):
            module.reset_class_weights()

    def to_channels_last(self):
        """Store weights and feed inputs channels-last (NHWC): faster convolutions on CPU (and GPU tensor cores).

        Examples:
            >>> import torch
            >>> from hf_memotion.models.vision import MemotionVisionModel, MemotionVisionConfig
            >>> model = MemotionVisionModel(MemotionVisionConfig(architecture="test_resnet")).eval()
            >>> before = model(torch.ones(1, 3, 32, 32)).pooler_output
            >>> torch.allclose(model.to_channels_last()(torch.ones(1, 3, 32, 32)).pooler_output, before, atol=1e-5)
            True
        """
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def set_inference_chunk_size(self, size: int | str | None):
        """Split inference batches into calls of ``size`` images (crops); training batches are never split.

        On a CPU a convolution's working set must stay in cache: ``benchmarks/bench.py`` measured ResNet-50
        channels-last at about 2.4x the images/s with 4 images per call than with 80 (a batch of 8 memes'
        ten crops). Outputs are unchanged.

        Examples:
            >>> import torch
            >>> from hf_memotion.models.vision import MemotionVisionModel, MemotionVisionConfig
            >>> model = MemotionVisionModel(MemotionVisionConfig(architecture="test_resnet")).eval()
            >>> x = torch.rand(3, 10, 3, 32, 32)
            >>> whole = model(x).pooler_output
            >>> torch.allclose(model.set_inference_chunk_size(4)(x).pooler_output, whole, atol=1e-5)
            True
        """
        if size != "auto" and size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"inference_chunk_size must be 'auto', None or a positive int, got {size!r}")
        self.inference_chunk_size = size
        return self

    def _chunked(self, flat: torch.Tensor, forward: Callable[[torch.Tensor], Any]) -> Any:
        size = self.inference_chunk_size
        if size == "auto":
            size = CPU_IMAGES_PER_FORWARD * 4 // flat.element_size() if flat.device.type == "cpu" else None
        if self.training or size is None or flat.shape[0] <= size or torch.compiler.is_compiling():
            return forward(flat)
        parts = [forward(chunk) for chunk in flat.split(size)]
        if isinstance(parts[0], tuple):
            return tuple(_concat(items) for items in zip(*parts, strict=True))
        return torch.cat(parts)

    def backbone_features(
        self, pixel_values: torch.Tensor | None, output_hidden_states: bool | list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None, int | None]:
        """Run the network on images ``(batch, 3, H, W)`` or crops ``(batch, crops, 3, H, W)``.

        Returns:
            ``(feature_map, pooled, hidden_states, crops)``: per image (or crop, flattened to ``batch * crops``)
            the unpooled map and the pooled features; timm's per-stage maps when ``output_hidden_states`` is
            true (a list of stage indices selects some); the number of crops, or ``None``.
        """
        flat, crops = _flatten_crops(pixel_values)
        parameter = next(self.network.parameters(), None)
        if parameter is not None and flat.dtype != parameter.dtype and flat.is_floating_point():
            flat = flat.to(parameter.dtype)
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        network = self.network
        pre_logits = not getattr(network, "num_classes", 0)  # a kept output layer (embedding_size) is pooled through
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if output_hidden_states:
            if not hasattr(network, "forward_intermediates"):
                raise ValueError(
                    f"timm's {self.config.architecture} has no forward_intermediates(): it cannot return "
                    "output_hidden_states (most timm architectures can)"
                )
            indices = list(output_hidden_states) if isinstance(output_hidden_states, (list, tuple)) else None

            def run(x: torch.Tensor):
                final, stages = network.forward_intermediates(x, **({"indices": indices} if indices else {}))
                return final, network.forward_head(final, pre_logits=pre_logits), tuple(stages)

            feature_map, pooled, hidden_states = self._chunked(flat, run)
        else:

            def run(x: torch.Tensor):
                final = network.forward_features(x)
                return final, network.forward_head(final, pre_logits=pre_logits)

            (feature_map, pooled), hidden_states = self._chunked(flat, run), None
        return feature_map, pooled, hidden_states, crops


def _concat(items: tuple) -> Any:
    if isinstance(items[0], tuple):
        return tuple(torch.cat(level) for level in zip(*items, strict=True))
    return torch.cat(items)


def per_image(tensor: torch.Tensor, crops: int | None) -> torch.Tensor:
    """``(batch * crops, ...)`` back to ``(batch, crops, ...)``; unchanged without crops."""
    return tensor if crops is None else tensor.view(-1, crops, *tensor.shape[1:])
