"""Registering hf-memotion with transformers, timm and the pipeline registry (runs once on import, idempotent).

Each model package registers its own classes when it is imported (``register_model_family`` in its
``__init__``; PolyNet through timm's ``@register_model``): importing them here is all it takes. After
``import hf_memotion``, the Auto classes resolve ``memotion_text``, ``memotion_vision``, ``vise`` and
``memotion_ensemble``, ``pipeline("meme-emotion")`` is registered and ``timm.create_model("polynet")`` works.
Saved folders carry no ``auto_map`` and no Python file (the classes need the ``hf-memotion`` package
installed; ``trust_remote_code`` is never required or defaulted).
"""

from __future__ import annotations

__all__ = ["register_auto_classes"]


def register_auto_classes() -> None:
    """Import every model package (each registers itself) and register the ``meme-emotion`` pipeline."""
    import hf_memotion.models.ensemble
    import hf_memotion.models.text
    import hf_memotion.models.vise
    import hf_memotion.models.vision  # noqa: F401  (importing registers)
    from hf_memotion.pipelines import register_pipeline

    register_pipeline()
