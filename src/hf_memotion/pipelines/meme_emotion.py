"""``pipeline("meme-emotion")``: sentiment, the four emotions and their intensities of memes.

Registered when ``hf_memotion`` is imported::

    from transformers import pipeline
    import hf_memotion

    pipe = pipeline("meme-emotion", model="outputs/demo/ensemble")        # a folder or a Hub id
    pipe({"image": "meme.jpg", "text": "when the exam is on monday"})
    pipe([{"image": ..., "text": ...}, ...], batch_size=8, return_base=True, ten_crop=False)

Each meme gives::

    {"sentiment": {"label": "positive", "score": 0.61, "scores": {...}},
     "emotions": {"humour": {"present": True, "score": 0.73, "intensity": "very_funny",
                             "intensity_scores": {...}}, "sarcasm": {...}, "offensive": {...},
                  "motivational": {...}},
     "submission": "1_1101_2301"}

plus, with ``return_base=True``, ``"base"`` (each base model's probabilities) and ``"modalities"``
(each modality's mean probabilities).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from transformers import Pipeline

from hf_memotion.data.images import ImageDecodeError, load_rgb_image
from hf_memotion.tasks import EMOTIONS, PROBLEM_NAMES, encode_submission, get_problem

__all__ = ["MemeEmotionPipeline", "MemeInputError"]


class MemeInputError(ValueError):
    """A meme given to the pipeline is malformed; the message names the item."""


def _scores(problem: str, probabilities: np.ndarray) -> dict[str, float]:
    return {label: float(p) for label, p in zip(get_problem(problem).labels, probabilities, strict=True)}


class MemeEmotionPipeline(Pipeline):
    """Predict Memotion's three subtasks for memes (an image and its text) with a modality ensemble.

    Batches are processed inside the pipeline: every base model runs once per batch over all memes
    (and all their crops), not once per meme.

    Example:
        >>> # pipe = pipeline("meme-emotion", model="outputs/demo/ensemble")
        >>> # pipe({"image": "meme.jpg", "text": "LOOK AT ME"})["sentiment"]["label"]
        >>> MemeEmotionPipeline._load_tokenizer
        False
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    #: Keyword arguments a call (or ``pipeline(...)``) takes besides the inputs.
    call_parameters = ("ten_crop", "return_base", "errors", "batch_size")

    def _sanitize_parameters(self, ten_crop=None, return_base=None, batch_size=None, errors=None, **kwargs):
        if kwargs:
            raise TypeError(
                f"meme-emotion got unknown argument(s) {sorted(kwargs)}; it takes {list(self.call_parameters)}"
            )
        forward = {}
        if ten_crop is not None:
            forward["ten_crop"] = bool(ten_crop)
        post = {"return_base": bool(return_base)} if return_base is not None else {}
        if errors is not None:
            if errors not in ("raise", "return"):
                raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
            post["errors"] = errors
        return {}, forward, post

    # The standard Pipeline machinery, for one meme ------------------------------------------

    def preprocess(self, meme: Any, index: int = 0) -> dict[str, Any]:
        """Check one meme and decode its image."""
        if not isinstance(meme, Mapping):
            raise MemeInputError(
                f"meme {index} is a {type(meme).__name__}; pass a dict {{'image': ..., 'text': ...}} or a list of them"
            )
        missing = [key for key in ("image", "text") if key not in meme or meme[key] is None]
        if missing:
            raise MemeInputError(f"meme {index} lacks {' and '.join(missing)}: give both 'image' and 'text'")
        text = meme["text"]
        if not isinstance(text, str):
            raise MemeInputError(f"meme {index}: 'text' must be a string, got {type(text).__name__}")
        try:
            image = load_rgb_image(meme["image"])
        except ImageDecodeError as err:
            raise MemeInputError(f"meme {index}: {err}") from None
        return {"image": image, "text": text}

    def _forward(self, model_inputs: Mapping[str, Any], ten_crop: bool = True) -> dict[str, Any]:
        return self._predict_batch([model_inputs], ten_crop=ten_crop)[0]

    def postprocess(
        self, model_outputs: Mapping[str, Any], return_base: bool = False, errors: str = "raise"
    ) -> dict[str, Any]:
        """Turn one meme's probabilities into the output schema."""
        final: Mapping[str, np.ndarray] = model_outputs["final"]
        out: dict[str, Any] = {}
        if "sentiment" in final:
            scores = _scores("sentiment", final["sentiment"])
            label = max(scores, key=scores.get)
            out["sentiment"] = {"label": label, "score": scores[label], "scores": scores}
        emotions = {}
        for emotion in EMOTIONS:
            entry: dict[str, Any] = {}
            if emotion in final:
                present = _scores(emotion, final[emotion])
                entry["present"] = bool(final[emotion].argmax() == 1)
                entry["score"] = list(present.values())[1]
            intensity = f"{emotion}_intensity"
            if intensity in final:
                grades = _scores(intensity, final[intensity])
                entry["intensity"] = max(grades, key=grades.get)
                entry["intensity_scores"] = grades
            if entry:
                emotions[emotion] = entry
        out["emotions"] = emotions
        if all(p in final for p in PROBLEM_NAMES):
            out["submission"] = encode_submission({p: int(final[p].argmax()) for p in PROBLEM_NAMES})
        if return_base:
            out["base"] = {m: {p: _scores(p, v) for p, v in per.items()} for m, per in model_outputs["base"].items()}
            out["modalities"] = {
                modality: {p: _scores(p, v) for p, v in per.items()}
                for modality, per in model_outputs["modalities"].items()
            }
        return out

    # Batched prediction ----------------------------------------------------------------------

    def _predict_batch(self, memes: list[Mapping[str, Any]], ten_crop: bool = True) -> list[dict[str, Any]]:
        images = [m["image"] for m in memes]
        texts = [m["text"] for m in memes]
        base = self.model.base_probabilities(images, texts, ten_crop=ten_crop)
        final = self.model.combine(base)
        modalities: dict[str, dict[str, list[np.ndarray]]] = {}
        for entry in self.model.config.base_models:
            for problem, probs in base[entry["name"]].items():
                modalities.setdefault(entry["modality"], {}).setdefault(problem, []).append(probs)
        means = {mod: {p: np.mean(v, axis=0) for p, v in per.items()} for mod, per in modalities.items()}
        return [
            {
                "final": {p: v[i] for p, v in final.items()},
                "base": {m: {p: v[i] for p, v in per.items()} for m, per in base.items()},
                "modalities": {m: {p: v[i] for p, v in per.items()} for m, per in means.items()},
            }
            for i in range(len(memes))
        ]

    def __call__(self, inputs: Any, batch_size: int | None = None, **kwargs: Any):
        """Predict one meme (a dict) or a list of memes, ``batch_size`` memes per model call.

        Args:
            inputs: ``{"image": path | PIL image | array | bytes, "text": str}`` or a list of them.
            batch_size: Memes per model call, a positive integer (default 8).
            **kwargs: ``ten_crop`` (default on, as in the paper), ``return_base`` (add each base
                model's and each modality's probabilities) and ``errors``: ``"raise"`` (default: a bad
                meme stops the call, naming it) or ``"return"`` (a bad meme gives ``{"error": "..."}`` in its
                place and the others are predicted). Any other keyword is an error.
        """
        single = isinstance(inputs, Mapping)
        memes = [inputs] if single else inputs
        if not isinstance(memes, list | tuple):
            raise MemeInputError(
                f"pass a meme dict {{'image': ..., 'text': ...}} or a list of them, not a {type(inputs).__name__}"
            )
        _, forward_kwargs, post_kwargs = self._sanitize_parameters(**kwargs)
        errors = post_kwargs.pop("errors", self._postprocess_params.get("errors", "raise"))
        size = batch_size if batch_size is not None else getattr(self, "_batch_size", None) or 8
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {size!r}")
        prepared: list[Any] = []
        for i, meme in enumerate(memes):
            try:
                prepared.append(self.preprocess(meme, i))
            except MemeInputError as err:
                if errors == "raise":
                    raise
                prepared.append(err)
        good = [item for item in prepared if not isinstance(item, MemeInputError)]
        predictions = []
        for start in range(0, len(good), size):
            outputs = self._predict_batch(good[start : start + size], **forward_kwargs)
            predictions.extend(self.postprocess(o, **post_kwargs) for o in outputs)
        answers = iter(predictions)
        results = [{"error": str(item)} if isinstance(item, MemeInputError) else next(answers) for item in prepared]
        return results[0] if single else results


def register_pipeline() -> None:
    """Register ``"meme-emotion"`` with transformers' pipeline registry (idempotent)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    from hf_memotion.models.ensemble import MemotionEnsembleModel

    if "meme-emotion" not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(
            "meme-emotion", pipeline_class=MemeEmotionPipeline, pt_model=MemotionEnsembleModel
        )
