"""Pipelines: ``pipeline("meme-emotion")`` (registered with transformers' pipeline registry on import)."""

from hf_memotion.pipelines.meme_emotion import MemeEmotionPipeline, MemeInputError

__all__ = ["MemeEmotionPipeline", "MemeInputError"]
