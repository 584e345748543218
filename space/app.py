"""Gradio Space: meme emotion analysis with an hf-memotion modality ensemble.

Run it with ``python space/app.py`` (from the repository) or as a Hugging Face Space (this folder).
Settings, all by environment variable:

- ``MEMOTION_MODEL``: the ensemble, a local folder or a Hub id (``namespace/name``); default
  ``outputs/demo/ensemble``, the demo run's output, trained on the first start when missing
  (about two minutes on 2 CPU cores). Write a one-slash local path as ``./outputs/ensemble``.
- ``MEMOTION_REVISION``: the Hub revision (a commit hash pins it).
- ``MEMOTION_TRAIN_CONFIG``: what the first start trains (a YAML file or a built-in config name;
  default ``demo``).
- ``MEMOTION_TEN_CROP``: ``0`` turns ten-crop inference of the visual models off (faster, less accurate).
- ``MEMOTION_BACKEND``: ``onnx`` serves an exported folder (``scripts/export_onnx.py``) with ONNX Runtime
  (``pip install "hf-memotion[onnx]"``); answers only: the explanations need the PyTorch ensemble.
- ``MEMOTION_EXPLAIN``: ``0`` turns the explanations off (the heat map, the words and each model's share; an
  explained call costs a few plain ones, see ``BENCHMARKS.md``).

Tests import this module (``demo`` is built at import; ``launch()`` runs only under ``__main__``).

Example:
    >>> # MEMOTION_MODEL=outputs/demo/ensemble python space/app.py
    >>> # from gradio_client import Client, handle_file
    >>> # Client("http://127.0.0.1:7860/").predict(handle_file("meme.png"), "LOOK AT ME", api_name="/predict")
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from hf_memotion import meme_emotion_pipeline
from hf_memotion.data.images import ImageDecodeError, load_rgb_image
from hf_memotion.data.ocr import OCRTimeoutError, OCRUnavailableError, read_meme_text
from hf_memotion.decoding import joint_weights
from hf_memotion.explaining import overlay_heatmap, place_heatmap
from hf_memotion.families import get_family
from hf_memotion.pipelines import MemeEmotionPipeline, MemeInputError
from hf_memotion.specs import load_run_config
from hf_memotion.tasks import EMOTIONS, PROBLEM_NAMES, get_problem

logger = logging.getLogger("hf_memotion.space")

HERE = Path(__file__).resolve().parent
MODEL = os.environ.get("MEMOTION_MODEL", "outputs/demo/ensemble")
REVISION = os.environ.get("MEMOTION_REVISION") or None
TRAIN_CONFIG = os.environ.get("MEMOTION_TRAIN_CONFIG", "demo")
TEN_CROP = os.environ.get("MEMOTION_TEN_CROP", "1") != "0"
BACKEND = os.environ.get("MEMOTION_BACKEND") or None
EXPLAIN = os.environ.get("MEMOTION_EXPLAIN", "1") != "0" and BACKEND != "onnx"
#: Where the ensemble runs: ``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:N``.
DEVICE = os.environ.get("MEMOTION_DEVICE", "auto")

#: Image formats an upload may have (Pillow names); anything else is refused before decoding.
UPLOAD_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
MAX_UPLOAD_MB = 10
MAX_UPLOAD = f"{MAX_UPLOAD_MB}mb"
MAX_PIXELS = 4096 * 4096
MAX_TEXT = 1000
#: Seconds Tesseract may spend on each read of an upload (a meme takes well under one).
OCR_TIMEOUT_S = 5
QUEUE_SIZE = 16
#: Longer side, in pixels, the explanation shows a smaller meme at.
SHOWN_SIZE = 320
#: Longer side, in pixels, of the copy a larger meme's explanation is drawn on (the panel's work stays bounded).
MAX_SHOWN_SIZE = 1024

EXAMPLES = [
    [str(HERE / "examples" / "meme_1.png"), "When sure feeling hate lol believe the polite coffee finally trying"],
    [str(HERE / "examples" / "meme_2.png"), "Teacher my trying monday year okay boring honestly time kind meanwhile"],
    [str(HERE / "examples" / "meme_3.png"), "When night trash morning awesome sincerely boring every dream"],
]


def decode_upload(payload: Any) -> Image.Image | None:
    """Decode an uploaded image with hf-memotion's checked decoder, or raise ``gr.Error`` with the fix.

    It replaces ``gr.Image``'s own preprocessing (see :func:`meme_image`), which opens any format
    Pillow knows and fails with a bare exception: here only :data:`UPLOAD_FORMATS` up to
    :data:`MAX_PIXELS` are decoded, and anything else gets a message.
    """
    if payload is None:
        return None
    data_url = next((u for u in (payload.path, payload.url) if isinstance(u, str) and u.startswith("data:")), None)
    source: Any = payload.path if data_url is None else None
    if data_url is not None:
        encoded = data_url.split(",", 1)[-1]
        if len(encoded) > MAX_UPLOAD_MB * 1024 * 1024 * 4 // 3 + 4:  # checked before decoding: base64 is 4/3
            raise gr.Error(f"The image is over {MAX_UPLOAD_MB} MB; upload a smaller one.", title="Image too large")
        try:
            source = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise gr.Error("The image data is not valid base64.", title="Cannot read the image") from None
    try:
        return load_rgb_image(source, formats=UPLOAD_FORMATS, max_pixels=MAX_PIXELS)
    except ImageDecodeError as err:
        name = getattr(payload, "orig_name", None) or "the upload"
        reason = str(err).replace(str(payload.path), name) if payload.path and data_url is None else str(err)
        raise gr.Error(
            f"{reason}. Upload a {', '.join(UPLOAD_FORMATS)} image of at most {MAX_UPLOAD_MB} MB.",
            title="Cannot read the image",
        ) from None


def meme_image(**kwargs: Any) -> gr.Image:
    """The standard image input, decoding uploads with :func:`decode_upload` (a PIL image for the handler).

    Set on the instance: a ``gr.Image`` subclass would make Gradio write a ``.pyi`` stub beside this file.

    Example:
        >>> meme_image(label="Meme image").preprocess(None) is None
        True
    """
    component = gr.Image(type="filepath", **kwargs)
    component.preprocess = decode_upload
    return component


def _is_hub_id(model: str) -> bool:
    return model.count("/") == 1 and not model.startswith((".", "/", "~")) and not Path(model).exists()


def ensure_model(model: str = MODEL, train_config: str = TRAIN_CONFIG) -> str:
    """Return ``model``; a missing local ``.../ensemble`` folder is trained first from ``train_config``."""
    if _is_hub_id(model) or (Path(model) / "config.json").is_file():
        return model
    folder = Path(model)
    if folder.name != "ensemble":
        raise FileNotFoundError(
            f"MEMOTION_MODEL={model} is neither an ensemble folder nor a Hub id (namespace/name); point it at the "
            "'ensemble' folder a training run wrote (outputs/<run>/ensemble)"
        )
    from hf_memotion.recipe.ensemble_recipe import run_training

    output = folder.parent
    config = load_run_config(train_config, [f"output_dir={output}"])
    if "demo" in (config.get("data") or {}):
        config["data"]["demo"]["output_dir"] = f"{output}_data"
    logger.warning("no ensemble at %s: training one from %s (first start only)", folder, train_config)
    run_training(config)
    return model


def load_pipeline(
    model: str = MODEL, revision: str | None = REVISION, device: str = DEVICE, backend: str | None = BACKEND
) -> MemeEmotionPipeline:
    """The ``meme-emotion`` pipeline of the configured ensemble (trained first when it is the missing demo).

    ``backend="onnx"`` serves an exported folder with ONNX Runtime (on the CPU unless onnxruntime-gpu is there).
    """
    from hf_memotion.hardware import resolve_device

    # the folder (or Hub snapshot) is checked before anything in it is parsed
    if backend == "onnx":
        return meme_emotion_pipeline(model, revision=revision, backend="onnx")
    return meme_emotion_pipeline(ensure_model(model), revision=revision, device=resolve_device(device))


def _two_class(problem: str, score: float) -> dict[str, float]:
    negative, positive = get_problem(problem).labels
    return {negative: 1.0 - score, positive: score}


def final_scores(output: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The ensemble's probabilities per problem, from the pipeline's output."""
    scores = {"sentiment": output["sentiment"]["scores"]}
    for emotion in EMOTIONS:
        entry = output["emotions"][emotion]
        scores[emotion] = _two_class(emotion, entry["score"])
        scores[f"{emotion}_intensity"] = entry["intensity_scores"]
    return scores


def served_answers(output: dict[str, Any]) -> dict[str, str]:
    """The label the pipeline answered for each problem (its decoding: B and C decided together by default)."""
    answers = {"sentiment": output["sentiment"]["label"]}
    for emotion in EMOTIONS:
        entry = output["emotions"][emotion]
        answers[emotion] = get_problem(emotion).labels[int(entry["present"])]
        answers[f"{emotion}_intensity"] = entry["intensity"]
    return answers


def contribution_chart(output: dict[str, Any]) -> Figure:
    """For each problem, the probability that each family's members and the ensemble give the ensemble's answer.

    The answers are the pipeline's (B and C decided together), as the labels above the chart show them.
    """
    final = final_scores(output)
    answers = served_answers(output)
    sources = {**{f"{get_family(m).label} models": s for m, s in output["modalities"].items()}, "ensemble": final}
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    axes = figure.subplots()
    height = 0.8 / len(sources)
    rows = range(len(PROBLEM_NAMES))
    for i, (source, scores) in enumerate(sources.items()):
        values = [scores[p][answers[p]] if p in scores else 0.0 for p in PROBLEM_NAMES]
        axes.barh([r + i * height for r in rows], values, height=height, label=source)
    axes.set_yticks([r + 0.4 - height / 2 for r in rows], [f"{p}: {answers[p]}" for p in PROBLEM_NAMES])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("probability of the ensemble's answer")
    # above the axes, in one row: a legend inside them would cover the bars that reach 1
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(sources), fontsize="small", frameon=False)
    return figure


def _joint(output: dict[str, Any], emotion: str) -> np.ndarray:
    entry = output["emotions"][emotion]
    return joint_weights(entry["score"], list(entry["intensity_scores"].values()))


def presence(output: dict[str, Any]) -> list[dict[str, float]]:
    """Subtask B as four yes/no answers, one per emotion, decided with subtask C (the pipeline's joint decoding).

    "yes" is the likeliest grade above "not" weighed by presence, "no" the "not" grade weighed by absence,
    normalised: the larger is the pipeline's answer and never contradicts the intensity shown.
    """
    answers = []
    for emotion in EMOTIONS:
        weights = _joint(output, emotion)
        yes, no = float(weights[1:].max()), float(weights[0])
        total = (yes + no) or 1.0
        answers.append({"yes": yes / total, "no": no / total})
    return answers


def intensities(output: dict[str, Any]) -> list[dict[str, float]]:
    """Subtask C per emotion, decided with subtask B (:func:`hf_memotion.decoding.joint_weights`)."""
    return [
        dict(zip(output["emotions"][e]["intensity_scores"], _joint(output, e).tolist(), strict=True)) for e in EMOTIONS
    ]


def explained_problems() -> list[tuple[str, str]]:
    """The answers the explanation panel can show: ``(label shown, problem)`` pairs, in the page's order."""
    names = {"sentiment": "sentiment"}
    for emotion in EMOTIONS:
        names[emotion] = f"{emotion}?"
        names[f"{emotion}_intensity"] = f"{emotion} intensity"
    return [(names[p], p) for p in PROBLEM_NAMES]


def _shown_copy(image: Image.Image) -> Image.Image:
    """The meme as the panel shows it, its work bounded whatever the upload's size.

    Small memes are enlarged to :data:`SHOWN_SIZE` (pixels kept sharp); large ones are a copy at most
    :data:`MAX_SHOWN_SIZE` on the longer side.
    """
    longer = max(image.size)
    scale = SHOWN_SIZE / longer if longer < SHOWN_SIZE else min(1.0, MAX_SHOWN_SIZE / longer)
    if scale == 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)


def _mean_heatmap(image: Image.Image, shown: Image.Image, explanation: dict[str, Any]) -> np.ndarray | None:
    """The visual models' heat maps laid over the shown copy of the meme, averaged (``None`` without one)."""
    heatmaps = explanation["heatmaps"]
    if not heatmaps:
        return None
    total = np.zeros((shown.height, shown.width), dtype=np.float32)
    for name, heatmap in heatmaps.items():
        total += place_heatmap(heatmap, explanation["regions"][name], image.size, shown.size)
    return total / len(heatmaps)


def _mean_words(words: dict[str, list]) -> list[tuple[str, float]]:
    """The textual models' word attributions, averaged word by word over the words they all read."""
    if not words:
        return []
    lists = list(words.values())
    shortest = min(len(w) for w in lists)
    return [(lists[0][i][0], float(np.mean([w[i][1] for w in lists]))) for i in range(shortest)]


def explanation_view(image: Image.Image | None, output: dict[str, Any] | None, problem: str) -> tuple:
    """What the explanation panel shows for one answer: the heat map over the meme, the words, each model's share.

    Words are scaled to [-1, 1] by the largest attribution (red: for the answer, blue: against it).
    """
    if image is None or not output or "explanation" not in output:
        return None, [], ""
    explanation = output["explanation"][problem]
    picture = _shown_copy(image)
    heatmap = _mean_heatmap(image, picture, explanation)
    lit = heatmap is not None and float(heatmap.max()) > 0
    if lit:
        picture = overlay_heatmap(picture, heatmap)
    words = _mean_words(explanation["words"])
    scale = max((abs(a) for _, a in words), default=0.0) or 1.0
    highlighted = [(f"{w} ", a / scale) for w, a in words]
    shares = ", ".join(f"**{m}** {v:+.2f}" for m, v in explanation["members"].items())
    summary = (
        f"Answer **{explanation['label']}** at {explanation['score']:.2f}: from {explanation['baseline']:.2f} with no "
        f"model's information, {shares} (each model's Shapley share)."
    )
    if heatmap is not None and not lit:
        summary += " No region of the image raised the visual models' score for it (the heat map is empty)."
    return picture, highlighted, summary


def read_text(image: Image.Image | None, current: str | None = None) -> str:
    """The text read off an uploaded meme (OCR), for the user to correct; the current text when OCR is missing."""
    if image is None:
        return current or ""
    try:
        return read_meme_text(image, timeout=OCR_TIMEOUT_S)
    except OCRUnavailableError as err:
        gr.Warning(f"The text cannot be read from the image here ({err}); type it.")
        return current or ""
    except (OCRTimeoutError, ValueError) as err:
        gr.Warning(f"The text could not be read from this image ({err}); type it.")
        return current or ""


def analyse(pipe: MemeEmotionPipeline, image: Image.Image | None, text: str | None) -> tuple:
    """Everything the page shows for one meme; an empty text is read from the image; bad input raises ``gr.Error``.

    The last item is the pipeline's whole output, explanations included (kept in the page's state: the explanation
    panel is drawn from it, for whichever answer is chosen, without running the models again).
    """
    if image is None:
        raise gr.Error("Upload the meme's image first.", title="No image")
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise gr.Error(f"The text has {len(text)} characters; memes carry at most {MAX_TEXT}.", title="Text too long")
    meme = {"image": image, "text": text} if text else {"image": image}  # no text: the pipeline reads it (OCR)
    try:
        output = pipe(meme, return_base=True, ten_crop=TEN_CROP, explain=EXPLAIN)
    except MemeInputError as err:
        raise gr.Error(str(err), title="Cannot analyse this meme") from None
    summary = {key: output[key] for key in ("sentiment", "emotions", "submission", "text", "text_source")}
    answers = (output["sentiment"]["scores"], *presence(output), *intensities(output), contribution_chart(output))
    return *answers, summary, output


def build_demo(pipe: MemeEmotionPipeline, model_name: str = MODEL) -> gr.Blocks:
    """The page: a meme in; its answers, a contribution chart, an explanation and the raw output out.

    The explanation is of the chosen answer: the heat map over the meme, the words, each model's share.
    """
    with gr.Blocks(title="Meme emotion analysis (hf-memotion)") as blocks:
        gr.Markdown(
            "# Meme emotion analysis\n"
            "A modality ensemble (SemEval-2020 Task 8, Memotion): textual and visual classifiers fused by stacked "
            "meta-estimators. Upload a meme (its text is read from the image: correct it if need be) to get its "
            "sentiment, which of humour, sarcasm, offensiveness and motivation it shows, and how strongly. "
            f"Model: `{model_name}`."
        )
        with gr.Row():
            with gr.Column():
                image = meme_image(label="Meme image", sources=["upload", "clipboard"], height=320)
                text = gr.Textbox(
                    label="Meme text",
                    placeholder="read from the image on upload; correct it, or leave it empty to read it on analysis",
                    lines=2,
                )
                button = gr.Button("Analyse", variant="primary")
                gr.Examples(EXAMPLES, inputs=[image, text])
            with gr.Column():
                sentiment = gr.Label(label="Sentiment (subtask A)", elem_id="sentiment")
                present, intensity = [], []
                for e in EMOTIONS:  # one row per emotion: is it there (B), and how strongly (C)
                    with gr.Row():
                        present.append(gr.Label(label=f"{e.capitalize()}? (subtask B)", elem_id=f"{e}_present"))
                        intensity.append(
                            gr.Label(label=f"{e.capitalize()} intensity (subtask C)", elem_id=f"{e}_intensity")
                        )
        chart = gr.Plot(label="What each modality contributed")
        with gr.Row(visible=EXPLAIN):
            with gr.Column():
                problem = gr.Dropdown(
                    explained_problems(), value="humour_intensity", label="Explain the answer for", elem_id="problem"
                )
                shares = gr.Markdown(elem_id="explanation_shares")
                words = gr.HighlightedText(
                    label="Words (red: for the answer, blue: against)", elem_id="explanation_words"
                )
            heatmap = gr.Image(
                label="Where the visual models looked",
                type="pil",
                interactive=False,
                height=320,
                elem_id="explanation_heatmap",
            )
        details = gr.JSON(label="Pipeline output")
        state = gr.State()
        outputs = [sentiment, *present, *intensity, chart, details, state]  # the API shows no state
        explained = [heatmap, words, shares]

        def predict(image: Image.Image | None, text: str | None) -> tuple:
            return analyse(pipe, image, text)

        def explain(image: Image.Image | None, output: dict | None, chosen: str) -> tuple:
            return explanation_view(image, output, chosen)

        image.upload(read_text, [image, text], text, api_name="read_text")
        button.click(predict, [image, text], outputs, api_name="predict").then(
            explain, [image, state, problem], explained, api_visibility="private"
        )
        text.submit(predict, [image, text], outputs, api_visibility="private").then(
            explain, [image, state, problem], explained, api_visibility="private"
        )
        problem.change(explain, [image, state, problem], explained, api_visibility="private")
    blocks.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return blocks


def launch(blocks: gr.Blocks, **kwargs: Any):
    """``blocks.launch`` with the upload limit."""
    return blocks.launch(max_file_size=MAX_UPLOAD, **kwargs)


PIPE = load_pipeline()
demo = build_demo(PIPE)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch(demo)
