"""Image processor for the visual models: the model's own size, mean and std; train, eval and ten-crop transforms.

Every image is decoded by :func:`hf_memotion.data.images.load_rgb_image` (EXIF orientation, first
frame, alpha on white, any mode to RGB, decompression bombs refused), then transformed with
torchvision:

* training: ``RandomResizedCrop``, ``RandomHorizontalFlip``, ``RandomRotation`` (the paper's three
  augmentations, Section 5.1; the paper used torchvision's defaults, but ``RandomRotation`` has none
  for its angle, so ``rotation_degrees`` is a setting, 10 by default);
* evaluation: resize to ``crop_size / crop_pct`` then centre crop (timm's evaluation transform);
* ten-crop: resize, then the four corners and the centre, and their horizontal flips
  (``pixel_values`` of shape ``(batch, 10, 3, H, W)``).

Examples:
    >>> from PIL import Image
    >>> processor = MemotionImageProcessor(crop_size=64, crop_pct=0.875)
    >>> processor([Image.new("RGB", (80, 60))], ten_crop=True)["pixel_values"].shape
    torch.Size([1, 10, 3, 64, 64])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from hf_memotion.data.images import DEFAULT_MAX_PIXELS, load_rgb_image

__all__ = ["MemotionImageProcessor"]

_INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


#: Largest network input side accepted (the paper's largest is PNASNet's 331; ViT-style models reach 1024).
MAX_CROP_SIZE = 2048


#: The range of ``crop_pct``: timm's pretrained configurations run from 0.875 to 1.15 (VOLO); a tiny one would
#: resize a meme to gigabytes before cropping.
CROP_PCT_RANGE = (0.5, 1.5)


def _in_range(name: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float, refused unless it is a number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


class MemotionImageProcessor(BaseImageProcessor):
    """Decode, resize, crop and normalise meme images for a :class:`MemotionVisionForImageClassification`.

    Saved beside the model (``preprocessor_config.json``) and found by ``AutoImageProcessor``.

    Args:
        crop_size: Side of the square input the network expects (e.g. 299 for Inception-ResNet-v2,
            331 for PolyNet and PNASNet-5-large).
        crop_pct: Evaluation resizes the shorter side to ``crop_size / crop_pct`` before cropping
            (:data:`CROP_PCT_RANGE`).
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        ten_crop: Default for ``__call__``: ten-crop inference (the paper's default) or one centre crop.
        rotation_degrees: Range of the training rotation augmentation.
        max_pixels: Images larger than this are refused (decompression bombs).

    Examples:
        >>> MemotionImageProcessor.from_timm("test_resnet").crop_size
        160
    """

    model_input_names = ["pixel_values"]  # noqa: RUF012

    def __init__(
        self,
        crop_size: int = 224,
        crop_pct: float = 0.875,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        interpolation: str = "bicubic",
        ten_crop: bool = True,
        rotation_degrees: float = 10.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}")
        # every number has the range a real model's has: a saved preprocessor_config.json is checked on loading
        self.crop_size = int(_in_range("crop_size", crop_size, 8, MAX_CROP_SIZE))
        self.crop_pct = _in_range("crop_pct", crop_pct, *CROP_PCT_RANGE)
        if not isinstance(mean, Sequence) or not isinstance(std, Sequence) or not len(mean) == len(std) == 3:
            raise ValueError(f"mean and std must be three numbers (one per RGB channel), got {mean!r} and {std!r}")
        self.mean = [_in_range("mean", m, 0.0, 1.0) for m in mean]
        self.std = [_in_range("std", s, 1e-3, 10.0) for s in std]
        self.interpolation = interpolation
        self.ten_crop = bool(ten_crop)
        self.rotation_degrees = _in_range("rotation_degrees", rotation_degrees, 0.0, 180.0)
        self.max_pixels = int(_in_range("max_pixels", max_pixels, 1, DEFAULT_MAX_PIXELS))

    @classmethod
    def from_timm(cls, architecture: str, **overrides: Any) -> MemotionImageProcessor:
        """The processor matching a timm architecture's pretrained data config (size, crop, mean, std)."""
        import timm
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=timm.create_model(architecture, pretrained=False, num_classes=0))
        settings = {
            "crop_size": cfg["input_size"][-1],
            "crop_pct": cfg.get("crop_pct", 0.875),
            "mean": cfg["mean"],
            "std": cfg["std"],
            "interpolation": cfg.get("interpolation", "bicubic")
            if cfg.get("interpolation") in _INTERPOLATIONS
            else "bicubic",
        }
        return cls(**{**settings, **overrides})

    @property
    def resize_size(self) -> int:
        """Shorter-side size before evaluation cropping."""
        return math.floor(self.crop_size / self.crop_pct)

    def _finish(self) -> list:
        return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(self.mean, self.std)]

    def train_transform(self) -> T.Compose:
        """The paper's training augmentation, ending in a normalised ``(3, H, W)`` tensor."""
        mode = _INTERPOLATIONS[self.interpolation]
        return T.Compose(
            [
                T.RandomResizedCrop(self.crop_size, interpolation=mode, antialias=True),
                T.RandomHorizontalFlip(),
                T.RandomRotation(self.rotation_degrees, interpolation=InterpolationMode.BILINEAR),
                *self._finish(),
            ]
        )

    def eval_transform(self, ten_crop: bool = False):
        """Resize + centre crop (``(3, H, W)``), or resize + ten crops (``(10, 3, H, W)``)."""
        mode = _INTERPOLATIONS[self.interpolation]
        resize = T.Resize(self.resize_size, interpolation=mode, antialias=True)
        if not ten_crop:
            return T.Compose([resize, T.CenterCrop(self.crop_size), *self._finish()])
        crops, finish = T.TenCrop(self.crop_size), T.Compose(self._finish())

        def ten_crop_transform(image):
            return torch.stack([finish(crop) for crop in crops(resize(image))])

        return ten_crop_transform

    def load_image(self, image: Any):
        """Decode one image safely (see :func:`~hf_memotion.data.images.load_rgb_image`)."""
        return load_rgb_image(image, max_pixels=self.max_pixels)

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        """Same as :meth:`preprocess`."""
        return self.preprocess(images, **kwargs)

    def preprocess(
        self, images: Any, *, ten_crop: bool | None = None, train: bool = False, return_tensors: str = "pt"
    ) -> BatchFeature:
        """Turn one image or a list of images (paths, bytes, PIL images or arrays) into ``pixel_values``.

        Args:
            images: One image or a list of them.
            ten_crop: Ten-crop inference (default: the processor's ``ten_crop`` setting); ignored when ``train``.
            train: Apply the random training augmentation instead.
            return_tensors: Only ``"pt"``.

        Raises:
            hf_memotion.data.ImageDecodeError: For an unreadable image, naming it.
        """
        if return_tensors != "pt":
            raise ValueError("MemotionImageProcessor returns PyTorch tensors only (return_tensors='pt')")
        items = images if isinstance(images, list | tuple) else [images]
        if not items:
            raise ValueError("no images given")
        if train:
            transform = self.train_transform()
        else:
            transform = self.eval_transform(self.ten_crop if ten_crop is None else ten_crop)
        pixel_values = torch.stack([transform(self.load_image(image)) for image in items])
        return BatchFeature({"pixel_values": pixel_values})
