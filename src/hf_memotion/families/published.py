"""Published configs of the backbones the shipped configs name, so that ``--plan`` sizes them with no download.

A family's :meth:`~hf_memotion.families.ModelFamily.planned_model` builds its network from these (under fake tensors,
no weights): a local folder or the Hugging Face cache first, else :data:`PAPER_TEXT_BACKBONES`, else a download.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hf_memotion.models.towers import tower_config

__all__ = ["PAPER_TEXT_BACKBONES", "published_config", "text_backbone_config"]

#: The paper's textual backbones, and the CLIP and SigLIP dual encoders of ``configs/modern.yaml``, by their published
#: configs (their Hub repos' ``config.json``), so that ``--plan`` needs no download; any other backbone's config is
#: read from a folder or the Hugging Face cache.
PAPER_TEXT_BACKBONES: dict[str, dict[str, Any]] = {
    "bert-large-uncased": {
        "model_type": "bert",
        "vocab_size": 30522,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "max_position_embeddings": 512,
    },
    "gpt2-medium": {
        "model_type": "gpt2",
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 1024,
        "n_layer": 24,
        "n_head": 16,
    },
    "gpt2-large": {
        "model_type": "gpt2",
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 1280,
        "n_layer": 36,
        "n_head": 20,
    },
    "xlnet-large-cased": {
        "model_type": "xlnet",
        "vocab_size": 32000,
        "d_model": 1024,
        "n_layer": 24,
        "n_head": 16,
        "d_inner": 4096,
    },
    # the contrastive dual encoders of configs/modern.yaml: a textual member reads the text tower, a joint one both
    "clip-vit-large-patch14": {
        "model_type": "clip",
        "projection_dim": 768,
        "text_config": {
            "vocab_size": 49408,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 77,
            "projection_dim": 768,
        },
        "vision_config": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
            "projection_dim": 768,
        },
    },
    "siglip-base-patch16-224": {
        "model_type": "siglip",
        "text_config": {
            "vocab_size": 32000,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 64,
        },
        "vision_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 16,
        },
    },
}


def text_backbone_config(backbone: str, tiny: Mapping[str, Any] | None, notes: list[str]) -> Any:
    """A text backbone's config for ``--plan``: a tiny one built, else its published config (its text tower).

    Examples:
        >>> text_backbone_config("xlnet-large-cased", None, notes := []).d_model, len(notes)
        (1024, 1)
    """
    if backbone.startswith("tiny:"):
        from hf_memotion.models.text.tiny import build_tiny_text_backbone

        corpus = [f"word{i}" for i in range(200)]  # the vocabulary's size only moves the (uncounted) embedding lookup
        return build_tiny_text_backbone(backbone[len("tiny:") :], corpus, **dict(tiny or {}))[0]
    return tower_config(published_config(backbone, notes, "text backbone"), "text")


def published_config(backbone: str, notes: list[str], role: str) -> Any:
    """A Hub model's config with no download where it can be: a folder, the cache, or :data:`PAPER_TEXT_BACKBONES`."""
    from transformers import CONFIG_MAPPING, AutoConfig

    try:  # a local folder, or the Hugging Face cache: no network
        return AutoConfig.from_pretrained(backbone, local_files_only=True)
    except OSError:
        pass
    known = PAPER_TEXT_BACKBONES.get(backbone.rsplit("/", 1)[-1])
    if known is not None:  # the paper's backbones: their published sizes, so the paper's plan needs no network
        note = f"{backbone}: config from its published sizes (not downloaded)"
        if note not in notes:
            notes.append(note)
        values = dict(known)
        return CONFIG_MAPPING[values.pop("model_type")](**values)
    try:
        return AutoConfig.from_pretrained(backbone)
    except OSError:
        raise FileNotFoundError(
            f"--plan: the config of {role} {backbone!r} is neither a local folder nor in the Hugging Face "
            "cache, and it could not be downloaded; download it once (huggingface-cli download <id> config.json) "
            "or give a local folder (HF_HUB_OFFLINE=1 skips the Hub at once)"
        ) from None
