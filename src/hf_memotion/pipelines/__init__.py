"""Pipelines: ``pipeline("meme-emotion")`` (registered with transformers' pipeline registry on import)."""

from hf_memotion.pipelines.meme_emotion import MemeEmotionPipeline, MemeInputError, meme_emotion_pipeline

__all__ = ["MemeEmotionPipeline", "MemeInputError", "meme_emotion_pipeline"]
