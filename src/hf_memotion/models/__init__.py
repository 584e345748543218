"""The model classes: the textual, visual and joint base models, VisE backbones, and what they share.

What they share: the heads, the timm wrapper, dual-encoder towers. Importing this package registers each model
package with transformers' Auto classes (and PolyNet and detectron2's ResNet-50 with timm).
"""

from hf_memotion.models import multimodal, text, vise, vision  # noqa: F401  (each registers its classes)
