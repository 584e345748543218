"""``pipeline("meme-emotion")``: sentiment, the four emotions and their intensities of memes.

Registered when ``hf_memotion`` is imported::

    from transformers import pipeline
    import hf_memotion

    pipe = pipeline("meme-emotion", model="outputs/demo/ensemble")        # a folder or a Hub id
    pipe = hf_memotion.meme_emotion_pipeline("someone/else-ensemble")    # one you did not make: checked first
    pipe({"image": "meme.jpg", "text": "when the exam is on monday"})
    pipe({"image": "meme.jpg"})                                          # text read from the image (OCR)
    pipe([{"image": ..., "text": ...}, ...], batch_size=8, return_base=True, ten_crop=False)
    for out in pipe(dataset, batch_size=8, num_workers=2): ...           # datasets.Dataset, generator: streamed

Each meme gives::

    {"sentiment": {"label": "positive", "score": 0.61, "scores": {...}},
     "emotions": {"humour": {"present": True, "score": 0.73, "intensity": "very_funny",
                             "intensity_scores": {...}}, "sarcasm": {...}, "offensive": {...},
                  "motivational": {...}},
     "submission": "1_1101_2301",
     "text": "when the exam is on monday", "text_source": "given"}        # or "ocr"

plus, with ``return_base=True``, ``"base"`` (each base model's probabilities) and ``"modalities"``
(the mean probabilities of each family's members, keyed by family: ``text``, ``vision``, ``multimodal``...), and
with ``explain=True``, ``"explanation"``: per problem, the answer's ``label``, ``score`` and ``baseline``, each base
model's and family's Shapley share of it (``members``, ``modalities``), a Grad-CAM ``heatmaps`` array per visual model
and ``[word, attribution]`` ``words`` per textual model (:mod:`hf_memotion.explaining.explanations`). ``present``,
``intensity`` and ``submission`` are read with ``decoding="joint"`` by default: each emotion's presence (B) and
intensity (C) decided together, so a meme is never "present" and "not_funny" at once (:mod:`hf_memotion.decoding`);
``decoding="independent"`` reads each problem's argmax, as the paper. The scores are the ensemble's probabilities either
way: calibrated probabilities (an answer scored 0.8 is right about 80% of the time on data like the training data) for
an ensemble trained with ``stacking.calibration`` (the default, ``auto``; see :mod:`hf_memotion.ensemble.calibration`),
the meta-estimators' raw outputs for one trained without (``none``, the paper's).

It runs on transformers' own :class:`~transformers.Pipeline` machinery: ``preprocess`` checks, decodes
and (when a meme has no text) reads one meme, then tokenizes, resizes and crops it with the ensemble's
:class:`~hf_memotion.ensemble.MemeProcessor`; a ``DataLoader`` (``num_workers``) collates
``batch_size`` memes with transformers' pad collate function; ``_forward`` runs every base model once per
batch and the meta-estimators; ``postprocess`` writes one meme's answer. A list comes back as a list; a
generator, a ``datasets.Dataset`` or a torch ``Dataset`` as an iterator, so memory is bounded by the batch,
not by the number of memes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset as TorchIterableDataset
from transformers import Pipeline

from hf_memotion.data.images import ImageDecodeError, load_rgb_image
from hf_memotion.data.ocr import OCRUnavailableError, read_meme_text
from hf_memotion.decoding import DECODINGS, decode
from hf_memotion.explaining.explanations import explain_memes
from hf_memotion.tasks import EMOTIONS, PROBLEM_NAMES, encode_submission, get_problem

__all__ = ["DEFAULT_BATCH_SIZE", "MemeEmotionPipeline", "MemeInputError", "meme_emotion_pipeline"]

#: Memes per model call when neither ``pipeline(...)`` nor the call sets ``batch_size``.
DEFAULT_BATCH_SIZE = 8
#: What a meme that failed its checks is run as (with ``errors="return"``), so that its batch keeps one layout.
_PLACEHOLDER = Image.new("RGB", (8, 8))


class MemeInputError(ValueError):
    """A meme given to the pipeline is malformed; the message names the item."""


class _Numbered:
    """A meme and its position in the caller's input (error messages name the position)."""

    __slots__ = ("index", "meme")

    def __init__(self, index: int, meme: Any):
        self.index, self.meme = index, meme


class _NumberedMemes(TorchDataset):
    """A sized input (list, ``datasets.Dataset``, torch ``Dataset``) read lazily, each meme with its position."""

    def __init__(self, memes: Any):
        self.memes = memes

    def __len__(self) -> int:
        return len(self.memes)

    def __getitem__(self, index: int) -> _Numbered:
        return _Numbered(index, self.memes[index])


def _scores(problem: str, probabilities: np.ndarray) -> dict[str, float]:
    return {label: float(p) for label, p in zip(get_problem(problem).labels, probabilities, strict=True)}


def _one(value: Any) -> Any:
    """One meme's entry of a batch-of-one value (a list of one, or an array with a first axis of one)."""
    return value[0] if isinstance(value, list | tuple | np.ndarray) else value


def _check_batching(batch_size: Any, num_workers: Any) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
    ):
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")


class MemeEmotionPipeline(Pipeline):
    """Predict Memotion's three subtasks for memes (an image and its text) with a modality ensemble.

    Batches are processed inside the pipeline: every base model runs once per batch over all memes
    (and all their crops), not once per meme. A meme without text (no ``"text"`` key, or ``None``) has
    its text read from the image by OCR (``pip install hf-memotion[ocr]`` and Tesseract).

    Examples:
        >>> from PIL import Image
        >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
        >>> pipe = MemeEmotionPipeline(model=random_ensemble(ENSEMBLE_SIZES["demo"]), task="meme-emotion")
        >>> memes = ({"image": Image.new("RGB", (64, 64), (i, 0, 0)), "text": "lol"} for i in range(3))
        >>> [answer["text_source"] for answer in pipe(memes, batch_size=2)]  # a generator: streamed
        ['given', 'given', 'given']

        A saved ensemble through transformers (a folder or a Hub id)::

            # dtype="auto" (the default): bf16 where the device has it natively, the ensemble's held-out bf16
            # check passed and bf16 is faster for it there, else fp32 (pipe.model.inference_dtype_reason says
            # which); dtype=torch.float32 to fix it
            pipe = pipeline("meme-emotion", model="outputs/demo/ensemble", batch_size=16)
            for answer in pipe(load_memotion("data")["test"], num_workers=2): ...
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    #: Keyword arguments a call (or ``pipeline(...)``) takes besides the inputs.
    call_parameters = (
        "ten_crop",
        "return_base",
        "errors",
        "ocr",
        "decoding",
        "explain",
        "batch_size",
        "num_workers",
    )

    def __init__(self, *args: Any, backend: str | None = None, **kwargs: Any):
        _check_batching(kwargs.get("batch_size"), kwargs.get("num_workers"))
        super().__init__(*args, **kwargs)
        served = getattr(self.model, "backend", "pytorch")
        if backend is not None and backend != served:  # pipeline(..., backend="onnx"): the folder must be one
            raise ValueError(
                f"backend={backend!r}, but the model is a {served} ensemble; "
                + (
                    "export it with scripts/export_onnx.py and load that folder"
                    if backend == "onnx"
                    else "load the PyTorch folder"
                )
            )
        if getattr(self.model, "inference_dtype_request", None) == "auto" and self.model.device.type != "cpu":
            self.model.to_inference_dtype("auto")  # loaded (and resolved) on the CPU, then moved: resolve for the GPU
        if self._batch_size is None:
            self._batch_size = DEFAULT_BATCH_SIZE
        # transformers' pad collate function reads the padding settings of the pipeline's feature extractor.
        self.feature_extractor = self.model.processor

    def _sanitize_parameters(
        self, ten_crop=None, return_base=None, errors=None, ocr=None, decoding=None, explain=None, **kwargs
    ):
        if kwargs:
            raise TypeError(
                f"meme-emotion got unknown argument(s) {sorted(kwargs)}; it takes {list(self.call_parameters)}"
            )
        pre: dict[str, Any] = {}
        forward: dict[str, Any] = {}
        if explain is not None:
            pre["explain"] = forward["explain"] = bool(explain)
        if ten_crop is not None:
            pre["ten_crop"] = bool(ten_crop)
        if ocr is not None:
            pre["ocr"] = bool(ocr)
        post = {"return_base": bool(return_base)} if return_base is not None else {}
        if decoding is not None:
            if decoding not in DECODINGS:
                raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
            post["decoding"] = forward["decoding"] = decoding
        if errors is not None:
            if errors not in ("raise", "return"):
                raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
            pre["errors"] = post["errors"] = errors
        return pre, forward, post

    def __call__(self, inputs: Any, batch_size: int | None = None, num_workers: int | None = None, **kwargs: Any):
        """Predict one meme (a dict) or many (a list, a generator, a ``datasets.Dataset``, a torch ``Dataset``).

        Args:
            inputs: ``{"image": path | PIL image | array | bytes, "text": str}`` (``"text"`` may be left
                out or ``None``: it is read from the image), or many of them. A list gives a list back; any
                other collection gives an iterator, decoding and predicting ``batch_size`` memes at a time.
            batch_size: Memes per model call, a positive integer (default: the pipeline's, else 8).
            num_workers: ``DataLoader`` worker processes that decode, OCR and preprocess memes (default 0:
                in this process; a generator is read by at most one).
            **kwargs: ``ten_crop`` (default on, as in the paper), ``return_base`` (add each base model's and
                each family's mean probabilities), ``ocr`` (default on; off: a meme without text is an error) and
                ``errors``: ``"raise"`` (default: a bad meme stops the call, naming it) or ``"return"`` (a bad
                meme gives ``{"error": "..."}`` in its place and the others are predicted), ``decoding``:
                ``"joint"`` (default: each emotion's presence and intensity decided together, never
                contradicting) or ``"independent"`` (each problem's argmax, the paper's), ``explain`` (add an
                ``"explanation"`` of every answer: each base model's and modality's share, a heat map per visual
                model, word attributions per textual model; see :mod:`hf_memotion.explaining.explanations`). Any
                other keyword is an error.

        Raises:
            MemeInputError: For a malformed meme (naming its position), or an input that holds no memes.
            TypeError: For an unknown keyword.
            ValueError: For a bad ``batch_size``, ``num_workers`` or ``errors``.
        """
        _check_batching(batch_size, num_workers)
        options = {"batch_size": batch_size, "num_workers": num_workers, **kwargs}
        if isinstance(inputs, Mapping):
            return super().__call__(_Numbered(0, inputs), **options)
        if isinstance(inputs, list | tuple):
            return list(super().__call__(_NumberedMemes(list(inputs)), **options))
        if _is_columnar(inputs):  # datasets.Dataset: rows read (and images decoded) lazily
            columns = list(inputs.column_names)
            if "image" not in columns:
                raise MemeInputError(f"the dataset has columns {columns}; memes need an 'image' column (and 'text')")
            return super().__call__(_NumberedMemes(inputs), **options)
        if isinstance(inputs, TorchDataset) and not isinstance(inputs, TorchIterableDataset):
            return super().__call__(_NumberedMemes(inputs), **options)
        if isinstance(inputs, str | bytes | os.PathLike | Image.Image | np.ndarray) or not isinstance(inputs, Iterable):
            raise MemeInputError(
                f"pass a meme dict {{'image': ..., 'text': ...}}, a list, a generator or a dataset of them, "
                f"not a {type(inputs).__name__}"
            )
        numbered = (_Numbered(i, meme) for i, meme in enumerate(inputs))  # generators and other iterables, lazily
        return super().__call__(numbered, **options)

    # The standard Pipeline steps --------------------------------------------------------------

    def _check(self, meme: Any, index: int, ocr: bool) -> tuple[Image.Image, str, str]:
        if not isinstance(meme, Mapping):
            raise MemeInputError(
                f"meme {index} is a {type(meme).__name__}; pass a dict {{'image': ..., 'text': ...}} or a list of them"
            )
        if meme.get("image") is None:
            raise MemeInputError(f"meme {index} lacks image: give 'image' (a path, PIL image, array or bytes)")
        text = meme.get("text")
        if text is not None and not isinstance(text, str):
            raise MemeInputError(f"meme {index}: 'text' must be a string, got {type(text).__name__}")
        try:
            image = load_rgb_image(meme["image"])
        except ImageDecodeError as err:
            raise MemeInputError(f"meme {index}: {err}") from None
        if text is not None:
            return image, text, "given"
        if not ocr:
            raise MemeInputError(f"meme {index} lacks text: give 'text', or allow reading it from the image (ocr=True)")
        try:
            return image, read_meme_text(image), "ocr"
        except (OCRUnavailableError, ValueError) as err:
            raise MemeInputError(f"meme {index} lacks text and it cannot be read from the image: {err}") from None

    def preprocess(
        self, meme: Any, ten_crop: bool = True, errors: str = "raise", ocr: bool = True, explain: bool = False
    ) -> dict[str, Any]:
        """Check one meme, decode its image, read its text when it has none, and make every base model's inputs.

        With ``errors="return"`` a bad meme becomes a placeholder carrying its message (so that its batch keeps
        one layout); ``_forward`` leaves it out of the models.
        """
        index, meme = (meme.index, meme.meme) if isinstance(meme, _Numbered) else (0, meme)
        try:
            image, text, source = self._check(meme, index, ocr)
            error = None
        except MemeInputError as err:
            if errors == "raise":
                raise
            image, text, source, error = _PLACEHOLDER, "", None, str(err)
        inputs = self.model.processor([image], [text], ten_crop=ten_crop)
        kept = {"_image": image} if explain else {}  # the decoded image, for the heat maps
        return {"error": error, "text": text if error is None else None, "text_source": source, **kept, **inputs}

    def _forward(self, model_inputs: dict[str, Any], explain: bool = False, decoding: str = "joint") -> dict[str, Any]:
        """Run every base model once over the batch, then the meta-estimators; flat arrays, memes first.

        With ``explain``, each meme's answers (read by ``decoding``) are explained (``"explanation"``, a list).
        """
        images = model_inputs.pop("_image", None)
        listed = {key: model_inputs.pop(key) for key in ("error", "text", "text_source")}
        listed = {key: value if isinstance(value, list) else [value] for key, value in listed.items()}
        size = len(listed["error"])
        keep = [i for i, error in enumerate(listed["error"]) if error is None]
        out: dict[str, Any] = dict(listed)  # "error" first: transformers reads the batch size from the first entry
        if not keep:
            return out
        if len(keep) < size:
            model_inputs = {key: value[keep] for key, value in model_inputs.items()}
        base = self.model.probabilities_from_inputs(model_inputs)
        final = self.model.combine(base)
        modalities: dict[str, dict[str, list[np.ndarray]]] = {}
        for entry in self.model.config.members:
            for problem, probs in base[entry.name].items():
                modalities.setdefault(entry.family, {}).setdefault(problem, []).append(probs)

        def scatter(values: np.ndarray) -> np.ndarray:
            full = np.full((size, *values.shape[1:]), np.nan)
            full[keep] = values
            return full

        out.update({f"final/{p}": scatter(v) for p, v in final.items()})
        out.update({f"base/{m}/{p}": scatter(v) for m, per in base.items() for p, v in per.items()})
        out.update(
            {f"family/{m}/{p}": scatter(np.mean(v, axis=0)) for m, per in modalities.items() for p, v in per.items()}
        )
        if explain:
            if getattr(self.model, "backend", "pytorch") != "pytorch":
                raise ValueError(
                    "explain=True needs gradients: load the PyTorch ensemble (an ONNX folder serves answers only)"
                )
            images = images if isinstance(images, list) else [images]
            answers = decode(final, decoding)
            explained = explain_memes(
                self.model, [images[i] for i in keep], [listed["text"][i] for i in keep], base, answers
            )
            out["explanation"] = [None] * size
            for i, explanation in zip(keep, explained, strict=True):
                out["explanation"][i] = explanation
        return out

    def postprocess(
        self,
        model_outputs: Mapping[str, Any],
        return_base: bool = False,
        errors: str = "raise",
        decoding: str = "joint",
    ) -> dict[str, Any]:
        """Turn one meme's probabilities into the output schema."""
        error = _one(model_outputs["error"])
        if error is not None:
            return {"error": error}
        final: dict[str, np.ndarray] = {}
        nested: dict[str, dict[str, dict[str, np.ndarray]]] = {"base": {}, "family": {}}
        for key, value in model_outputs.items():
            kind, _, rest = key.partition("/")  # "final/<problem>", "base/<model>/<problem>", "family/<f>/<problem>"
            if not rest:
                continue
            probabilities = np.asarray(value).reshape(-1, value.shape[-1])[0]
            if kind == "final":
                final[rest] = probabilities
            else:
                owner, _, problem = rest.rpartition("/")  # problem names hold no "/"; model names might
                nested[kind].setdefault(owner, {})[problem] = probabilities
        decided = {p: int(v[0]) for p, v in decode(final, decoding).items()}
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
                entry["present"] = decided[emotion] == 1
                entry["score"] = list(present.values())[1]
            intensity = f"{emotion}_intensity"
            if intensity in final:
                grades = _scores(intensity, final[intensity])
                entry["intensity"] = list(grades)[decided[intensity]]
                entry["intensity_scores"] = grades
            if entry:
                emotions[emotion] = entry
        out["emotions"] = emotions
        if all(p in final for p in PROBLEM_NAMES):
            out["submission"] = encode_submission({p: decided[p] for p in PROBLEM_NAMES})
        out["text"] = _one(model_outputs["text"])
        out["text_source"] = _one(model_outputs["text_source"])
        if "explanation" in model_outputs:
            out["explanation"] = _one(model_outputs["explanation"])
        if return_base:
            out["base"] = {m: {p: _scores(p, v) for p, v in per.items()} for m, per in nested["base"].items()}
            out["modalities"] = {m: {p: _scores(p, v) for p, v in per.items()} for m, per in nested["family"].items()}
        return out

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save the ensemble so that ``pipeline("meme-emotion", model=save_directory)`` loads the same pipeline.

        Unlike :meth:`transformers.Pipeline.save_pretrained` it writes no ``custom_pipelines`` entry and no
        Python file (the task comes from the installed hf-memotion package), and leaves the live model as it is.
        """
        if Path(save_directory).is_file():
            raise NotADirectoryError(f"{save_directory} is a file; give a folder to save the pipeline's ensemble in")
        self.model.save_pretrained(save_directory, **kwargs)


def meme_emotion_pipeline(
    model: Any,
    *,
    revision: str | None = None,
    backend: str | None = None,
    dtype: Any = "auto",
    device: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> MemeEmotionPipeline:
    """``pipeline("meme-emotion", model=...)`` with the folder checked before anything in it is parsed.

    transformers' ``pipeline()`` reads a folder's (or a Hub repository's) ``config.json`` itself before any code of
    this library runs. Here the ensemble is loaded first by
    :meth:`~hf_memotion.ensemble.MemotionEnsembleModel.from_pretrained` (the folder, or the Hub snapshot of model
    files, checked: links, sizes, pickles, every member's configs), then handed to ``pipeline()``. Use it for a
    folder or Hub id you did not make; the answers are the same as ``pipeline()``'s.

    Args:
        model: A saved ensemble folder, a Hub id, or a loaded ensemble.
        revision: The Hub revision.
        backend: ``"pytorch"`` or ``"onnx"`` to insist on one (default: what the folder holds).
        dtype: ``"auto"`` (the default) or a dtype, as ``pipeline(..., dtype=...)``.
        device: Where the pipeline runs (as ``pipeline(..., device=...)``).
        model_kwargs: More loading options (``device_map``, ``token``, ``quantize_text``, ...).
        **kwargs: The pipeline's own options (``batch_size``, ``num_workers``, ...).

    Examples:
        >>> import tempfile
        >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
        >>> folder = tempfile.mkdtemp() + "/ensemble"
        >>> random_ensemble(ENSEMBLE_SIZES["demo"]).save_pretrained(folder)
        >>> pipe = meme_emotion_pipeline(folder, batch_size=2)
        >>> from PIL import Image
        >>> sorted(pipe({"image": Image.new("RGB", (64, 64)), "text": "lol"}))[:3]
        ['emotions', 'sentiment', 'submission']
    """
    from transformers import pipeline

    if isinstance(model, str | os.PathLike):
        from hf_memotion.ensemble import MemotionEnsembleModel

        options = {"dtype": dtype, **dict(model_kwargs or {})}
        model = MemotionEnsembleModel.from_pretrained(model, revision=revision, backend=backend, **options)
    return pipeline("meme-emotion", model=model, device=device, backend=backend, **kwargs)


def _is_columnar(inputs: Any) -> bool:
    """A ``datasets.Dataset`` (sized, indexable, with named columns), without importing ``datasets`` here."""
    return hasattr(inputs, "column_names") and hasattr(inputs, "__getitem__") and hasattr(inputs, "__len__")


def _register_pipeline() -> None:
    """Register ``"meme-emotion"`` with transformers' pipeline registry (once, when this module is imported)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    from hf_memotion.ensemble import MemotionEnsembleModel

    if "meme-emotion" not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(
            "meme-emotion", pipeline_class=MemeEmotionPipeline, pt_model=MemotionEnsembleModel
        )


_register_pipeline()
