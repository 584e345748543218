"""Pipelines: ``pipeline("meme-emotion")``."""

from hf_memotion.pipelines.meme_emotion import MemeEmotionPipeline, MemeInputError, register_pipeline

__all__ = ["MemeEmotionPipeline", "MemeInputError", "register_pipeline"]
