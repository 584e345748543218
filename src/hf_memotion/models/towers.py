"""Encoder towers by config or Hub id: any transformers model, and one side of a CLIP or SigLIP dual encoder.

A contrastive image-text model (``CLIPModel``, ``SiglipModel``) is published as one repository holding both towers.
The library's members take one side of it: the textual member its text tower, a visual or joint member its image
tower. :func:`tower_config` reads a side's config out of a dual encoder's (any other config is its own tower),
:func:`build_tower` makes the tower from a config (``AutoModel`` does not map every tower config: SigLIP's are
missing), and :func:`load_tower` loads a side's weights by Hub id or folder through the tower class's own
``from_pretrained`` (transformers' checkpoint conversion maps the dual encoder's keys; the other side's are left).

Examples:
    >>> from transformers import CLIPConfig
    >>> clip = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    ...                                "num_attention_heads": 2, "vocab_size": 100},
    ...                   vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    ...                                  "num_attention_heads": 2, "image_size": 32, "patch_size": 8})
    >>> type(build_tower(tower_config(clip, "text"))).__name__, type(build_tower(tower_config(clip, "vision"))).__name__
    ('CLIPTextModel', 'CLIPVisionModel')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import transformers
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from hf_memotion.hub.connectivity import offline_if_unreachable

__all__ = [
    "DUAL_ENCODER_TYPES",
    "FIXED_LENGTH_TEXT_TOWERS",
    "TOWER_POOLING",
    "build_tower",
    "is_dual_encoder",
    "load_tower",
    "tower_config",
]

#: ``model_type`` of the contrastive dual encoders whose towers the members take.
DUAL_ENCODER_TYPES = ("clip", "siglip", "siglip2", "chinese_clip", "altclip")

#: How a tower's sequence is summarised when a joint member reads it: CLIP's text embedding is the end-of-text
#: token's state (its ``pooler_output``), SigLIP's the model's own pooler head; other text encoders fall back to the
#: paper's pooling (:func:`~hf_memotion.models.text.configuration_memotion_text.default_pooling`).
TOWER_POOLING = {"clip_text_model": "pooler", "siglip_text_model": "pooler", "siglip2_text_model": "pooler"}

#: Text towers pre-trained on texts padded to their full length with no padding mask: SigLIP's (big_vision pads every
#: text to 64 tokens and masks nothing; transformers' model page: "make sure to set padding='max_length' as that's how
#: the model was trained"), whose pooled output reads the last position, padding or not. Every other tower reads each
#: batch padded to its longest text with the padding masked out (BERT-like encoders; CLIP's, whose end-of-text token
#: comes before the padding under its causal mask). See :class:`~hf_memotion.models.text.preprocessing.TextFeeding`.
FIXED_LENGTH_TEXT_TOWERS = ("siglip_text_model", "siglip2_text_model")

Side = Literal["text", "vision"]
#: What marks each side's tower in its config: the attribute only that side has, and the encoder it makes.
_SIDES = {"text": ("vocab_size", "a text encoder"), "vision": ("image_size", "an image encoder")}


def is_dual_encoder(config: PretrainedConfig) -> bool:
    """Whether ``config`` is a dual encoder's (both towers inside), not one tower's."""
    return getattr(config, "model_type", None) in DUAL_ENCODER_TYPES and hasattr(config, "text_config")


def tower_config(config: PretrainedConfig, side: Side) -> PretrainedConfig:
    """The config of ``side``'s tower: a dual encoder's sub-config, or ``config`` itself for a single encoder.

    Raises:
        ValueError: ``config`` holds no tower of that side (a text model asked for its image tower), in one line.
    """
    if side not in _SIDES:
        raise ValueError(f"side must be 'text' or 'vision', got {side!r}")
    marker, kind = _SIDES[side]
    tower = getattr(config, f"{side}_config") if is_dual_encoder(config) else config
    if getattr(tower, marker, None) is None:
        raise ValueError(
            f"a {tower.model_type!r} model is not {kind} (no {marker}): give a {side} tower or a CLIP/SigLIP dual "
            "encoder"
        )
    return tower


def _tower_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    try:
        return MODEL_MAPPING[type(config)]
    except KeyError:  # towers AutoModel does not map (SiglipTextConfig -> SiglipTextModel)
        name = type(config).__name__.removesuffix("Config") + "Model"
        model_class = getattr(transformers, name, None)
        if model_class is None:
            raise ValueError(
                f"no transformers model class for a {type(config).__name__} ({config.model_type!r}): give a text or "
                "image encoder transformers' AutoModel knows, or a CLIP/SigLIP dual encoder"
            ) from None
        return model_class


def build_tower(config: PretrainedConfig) -> PreTrainedModel:
    """A randomly initialised tower for ``config`` (a single encoder's config; see :func:`tower_config`)."""
    return _tower_class(config)._from_config(config)


def load_tower(
    source: str | os.PathLike, side: Side, *, revision: str | None = None, **options: Any
) -> PreTrainedModel:
    """Load ``side``'s tower with its pre-trained weights from a Hub id or folder (a dual encoder or one tower).

    Raises:
        ValueError: The checkpoint lacks some of the tower's weights (the first missing key named).
        OSError: ``source`` is neither a folder nor in the Hub cache while the Hub cannot be reached (with the fix).
    """
    offline = not Path(source).is_dir() and offline_if_unreachable(
        local_files_only=bool(options.get("local_files_only"))
    )
    try:
        config = tower_config(AutoConfig.from_pretrained(source, revision=revision), side)
        quiet = transformers.utils.logging.get_verbosity()
        transformers.utils.logging.set_verbosity_error()  # the other tower's weights are "unexpected": left on purpose
        try:
            model, info = _tower_class(config).from_pretrained(
                source, config=config, revision=revision, output_loading_info=True, **options
            )
        finally:
            transformers.utils.logging.set_verbosity(quiet)
    except OSError as err:
        if not offline:
            raise
        raise OSError(
            f"{side} encoder {str(source)!r} is not a local folder and not in the Hugging Face cache, and the Hub "
            f"cannot be reached: download it once with a network (hf download {source}) or give a local folder"
        ) from err
    missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
    if missing:
        raise ValueError(
            f"{side} encoder {str(source)!r}: its checkpoint has no weights for {missing[0]!r} ({len(missing)} missing "
            f"in all): not a {type(model).__name__} checkpoint; give the {side} tower's or its dual encoder's Hub id"
        )
    return model
