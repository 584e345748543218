"""Registering a model family with transformers' Auto classes: what each model package calls on import.

Each package registers its own classes beside them (``models/text/__init__.py`` and so on), as timm's
``@register_model`` does; the calls are idempotent. Nothing is registered for remote code: a saved folder holds
no Python file and no ``auto_map`` (the Hub flags both), so loading needs ``pip install hf-memotion`` and
``import hf_memotion``, and ``trust_remote_code`` is never needed (the model card says so, with
``library_name: hf-memotion``).

Examples:
    >>> import transformers
    >>> from hf_memotion.models.text import MemotionTextConfig
    >>> transformers.AutoConfig.for_model("memotion_text").__class__ is MemotionTextConfig
    True
"""

from __future__ import annotations

from collections.abc import Mapping

import transformers
from transformers import AutoConfig, AutoImageProcessor

__all__ = ["register_model_family"]


def register_model_family(
    config_class: type,
    models: Mapping[str, type],
    image_processor: type | None = None,
) -> None:
    """Register ``config_class`` and, per Auto class name (``"AutoModel"``, ...), its model class.

    Args:
        config_class: The ``PretrainedConfig`` subclass (its ``model_type`` is registered with ``AutoConfig``).
        models: Auto class name -> model class.
        image_processor: Registered with ``AutoImageProcessor`` for this config, when given.
    """
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for auto_name, model_class in models.items():
        getattr(transformers, auto_name).register(config_class, model_class, exist_ok=True)
    if image_processor is not None:
        AutoImageProcessor.register(
            config_class,
            image_processor_classes={"torchvision": image_processor, "pil": image_processor},
            exist_ok=True,
        )
