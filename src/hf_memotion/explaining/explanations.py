"""Why the ensemble answered what it did, for each meme and problem: members, image regions and words.

For every answer (each problem's class as served, after decoding) an explanation holds:

- ``members`` and ``modalities``: each base model's exact Shapley value (and their sum per family) on the
  answer's probability, from ``baseline`` (every member at its average answer) to ``score`` (the served
  probability) (:mod:`~hf_memotion.explaining.shapley`);
- ``heatmaps``: per member reading the image alone (its family attributing it), Grad-CAM of that member's score for
  the answer over the image it saw (the centre crop), at the model's input resolution: a ``(crop, crop)`` float32
  array from 0 to at most 1 (:mod:`~hf_memotion.explaining.grad_cam`), whatever the meme's size;
- ``regions``: per member with a heat map, where that crop lies in the meme, ``[left, top, right, bottom]`` in the
  meme's pixels (:func:`crop_box`); :func:`overlay_heatmap` lays the map there, :func:`place_heatmap` into a frame
  of any size;
- ``words``: per member reading the text alone (its family attributing it), ``[word, attribution]`` in the text's
  order, integrated gradients of that member's probability of the answer
  (:mod:`~hf_memotion.explaining.integrated_gradients`).

Examples:
    >>> from PIL import Image
    >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
    >>> ensemble = random_ensemble(ENSEMBLE_SIZES["demo"])
    >>> images, texts = [Image.new("RGB", (80, 60), (200, 30, 30))], ["lol when the exam is on monday"]
    >>> base = ensemble.base_probabilities(images, texts)
    >>> answers = {p: v.argmax(-1) for p, v in ensemble.combine(base).items()}
    >>> humour = explain_memes(ensemble, images, texts, base, answers)[0]["humour"]
    >>> sorted(humour), humour["heatmaps"]["vision"].shape, [w for w, _ in humour["words"]["text"]][:2]
    (['baseline', 'heatmaps', 'label', 'members', 'modalities', 'regions', 'score', 'words'], (64, 64), ['lol', 'when'])
    >>> [round(v, 1) for v in humour["regions"]["vision"]]  # the centre crop, in the 80 x 60 meme's pixels
    [10.8, 1.8, 68.3, 59.1]
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from hf_memotion.explaining.grad_cam import grad_cam
from hf_memotion.explaining.integrated_gradients import word_attributions
from hf_memotion.explaining.shapley import member_shapley
from hf_memotion.families import get_family
from hf_memotion.families.inputs import ImageInput, MemberInput, TextInput

if TYPE_CHECKING:
    from hf_memotion.ensemble import MemotionEnsembleModel
    from hf_memotion.ensemble.configuration_memotion_ensemble import EnsembleMember

__all__ = [
    "ExplanationUnavailableError",
    "answering_heads",
    "attributed_input",
    "crop_box",
    "explain_memes",
    "overlay_heatmap",
    "place_heatmap",
]


class ExplanationUnavailableError(RuntimeError):
    """A base model cannot be explained as loaded (e.g. an int8-quantized text model has no gradients)."""


def crop_box(image_size: tuple[int, int], resize_size: int, crop_size: int) -> tuple[float, float, float, float]:
    """Where the evaluation centre crop lies in an image, ``(left, top, right, bottom)`` in the image's pixels.

    The image's shorter side is resized to ``resize_size`` (the longer side in proportion, as torchvision's
    ``Resize``), then a ``crop_size`` square is cut from the centre (as ``CenterCrop``); the box is that square
    mapped back to the image.

    Examples:
        >>> [round(v, 2) for v in crop_box((96, 96), 73, 64)]  # (width, height): a 64 crop of a 73 resize
        [5.26, 5.26, 89.42, 89.42]
        >>> [round(v) for v in crop_box((200, 100), 73, 64)]  # a wide image: the middle of its width
        [56, 5, 144, 93]
    """
    width, height = image_size
    if width <= height:
        new_w, new_h = resize_size, int(resize_size * height / width)
    else:
        new_h, new_w = resize_size, int(resize_size * width / height)
    top, left = round((new_h - crop_size) / 2.0), round((new_w - crop_size) / 2.0)
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + crop_size) * sx, (top + crop_size) * sy


def place_heatmap(
    heatmap: np.ndarray, box: Sequence[float], image_size: tuple[int, int], size: tuple[int, int] | None = None
) -> np.ndarray:
    """A crop's heat map laid into a frame of the image: resized into ``box``, 0 outside.

    Args:
        heatmap: ``(h, w)`` map of the crop (an explanation's ``heatmaps[...]``).
        box: Where the crop lies, in the image's pixels (an explanation's ``regions[...]``).
        image_size: The image's ``(width, height)``.
        size: The frame's ``(width, height)`` (default: the image's); a smaller one keeps the work bounded.

    Returns:
        A ``(height, width)`` float32 array of the frame.

    Examples:
        >>> frame = place_heatmap(np.ones((4, 4)), (10, 0, 20, 10), (40, 10), size=(8, 2))
        >>> frame.shape, float(frame[:, 2:4].min()), float(frame[:, 4:].max())
        ((2, 8), 1.0, 0.0)
    """
    width, height = size or image_size
    sx, sy = width / image_size[0], height / image_size[1]
    left, top, right, bottom = box
    x0, y0 = max(0, round(left * sx)), max(0, round(top * sy))
    x1, y1 = min(width, max(x0 + 1, round(right * sx))), min(height, max(y0 + 1, round(bottom * sy)))
    frame = np.zeros((height, width), dtype=np.float32)
    if x1 > x0 and y1 > y0:
        inside = Image.fromarray(np.asarray(heatmap, dtype=np.float32)).resize((x1 - x0, y1 - y0), Image.BILINEAR)
        frame[y0:y1, x0:x1] = np.clip(np.asarray(inside, dtype=np.float32), 0.0, 1.0)
    return frame


def overlay_heatmap(
    image: Image.Image, heatmap: np.ndarray, box: Sequence[float] | None = None, *, floor: float = 0.25
) -> Image.Image:
    """The image lit by a heat map, at the image's size: as it is where the map is 1, dimmed to ``floor`` at 0.

    A spotlight reads on memes of any colour, where a colour map mixes with the meme's own colours.

    Args:
        image: The meme (a large one is best shown from a smaller copy: ``Image.thumbnail``, with the box scaled).
        heatmap: A crop's heat map (an explanation's ``heatmaps[...]``), or a map of the whole image.
        box: Where the map lies in the image (an explanation's ``regions[...]``); ``None``: the whole image.
        floor: The light where the map is 0.

    Examples:
        >>> lit = overlay_heatmap(Image.new("RGB", (40, 30), (200, 200, 200)), np.eye(2))
        >>> lit.size, lit.getpixel((0, 0)), lit.getpixel((39, 0))
        ((40, 30), (200, 200, 200), (50, 50, 50))
        >>> overlay_heatmap(Image.new("RGB", (40, 30), (200, 200, 200)), np.ones((2, 2)), (0, 0, 20, 30)).getpixel(
        ...     (30, 0))  # outside the box: dimmed
        (50, 50, 50)
    """
    light = place_heatmap(heatmap, box if box is not None else (0, 0, *image.size), image.size)
    light *= 1.0 - floor
    light += floor
    lit = np.asarray(image.convert("RGB"), dtype=np.float32)  # one float copy of the image, worked on in place
    lit *= light[..., None]
    np.rint(lit, out=lit)
    np.clip(lit, 0, 255, out=lit)
    return Image.fromarray(lit.astype(np.uint8))


def answering_heads(member: EnsembleMember, problems: Sequence[str]) -> dict[str, str]:
    """Problem -> the head of a base model (an ensemble member) that answers it (an alias reads another's head).

    Examples:
        >>> from hf_memotion.ensemble.configuration_memotion_ensemble import EnsembleMember
        >>> member = EnsembleMember("text", "text", "text", ["motivational", "motivational_intensity"],
        ...                         {"motivational_intensity": "motivational"})
        >>> answering_heads(member, ["motivational_intensity", "humour"])
        {'motivational_intensity': 'motivational'}
    """
    return {p: member.aliases.get(p, p) for p in problems if p in member.problems}


def attributed_input(ensemble: MemotionEnsembleModel, member: EnsembleMember) -> MemberInput | None:
    """The one input a member's answers are attributed to (its image or its text), or ``None``.

    A member reading both, one its family does not attribute, or a textual member whose backbone takes token ids
    only (SigLIP's text tower: integrated gradients walk the token embeddings) gets its Shapley share only.
    """
    inputs = ensemble.processor.inputs_of(member.name)
    if not get_family(member.family).explains or len(inputs) != 1:
        return None
    backbone = getattr(getattr(ensemble.base_models[member.name], "memotion_text", None), "backbone", None)
    if backbone is not None and "inputs_embeds" not in inspect.signature(backbone.forward).parameters:
        return None
    return inputs[0]


def _visual_heatmaps(ensemble, entry, image: ImageInput, images, answers, problems) -> dict[str, np.ndarray]:
    """Problem -> ``(n, crop, crop)`` heat maps of a member reading the image alone, over the crops it saw."""
    model, processor = ensemble.base_models[entry.name], image.processor
    heads = answering_heads(entry, problems)
    pixel_values = processor(list(images), ten_crop=False)["pixel_values"].to(model.device, model.dtype)
    rows = torch.arange(len(images), device=model.device)

    def targets(output):
        logits = output.problem_logits
        return {p: logits[h][rows, torch.as_tensor(answers[p], device=model.device)] for p, h in heads.items()}

    return grad_cam(model, pixel_values, targets)


def explain_memes(
    ensemble: MemotionEnsembleModel,
    images: Sequence[Image.Image],
    texts: Sequence[str],
    base: Mapping[str, Mapping[str, np.ndarray]],
    answers: Mapping[str, np.ndarray],
    *,
    steps: int = 32,
) -> list[dict[str, dict[str, Any]]]:
    """One explanation per meme (see the module docstring for its layout).

    Args:
        ensemble: A :class:`~hf_memotion.ensemble.MemotionEnsembleModel`.
        images: The memes' decoded RGB images.
        texts: Their texts.
        base: The base models' probabilities for these memes (as served: ten-crop or not).
        answers: Problem -> the class answered for each meme (after decoding).
        steps: Integration steps of the textual members' attributions.

    Raises:
        ExplanationUnavailableError: For a text model quantized to int8 (load the ensemble without
            ``quantize_text`` to explain it).
    """
    problems = [p for p in ensemble.config.problems if p in answers]
    contributions = member_shapley(ensemble.stackers, base, {p: answers[p] for p in problems})
    modality_of = {e.name: e.family for e in ensemble.config.members}
    labels = ensemble.config.problem_labels
    out: list[dict[str, dict[str, Any]]] = []
    for i in range(len(images)):
        meme = {}
        for problem in problems:
            c = contributions[problem]
            meme[problem] = {
                "label": labels[problem][int(answers[problem][i])],
                "score": float(c.value[i]),
                "baseline": float(c.baseline[i]),
                "members": {m: float(v[i]) for m, v in c.members.items()},
                "modalities": {m: float(v[i]) for m, v in c.by_modality(modality_of).items()},
                "heatmaps": {},
                "regions": {},
                "words": {},
            }
        out.append(meme)
    for entry in ensemble.config.members:
        name = entry.name
        single = attributed_input(ensemble, entry)
        if isinstance(single, ImageInput):
            processor = single.processor
            boxes = [list(crop_box(image.size, processor.resize_size, processor.crop_size)) for image in images]
            for problem, maps in _visual_heatmaps(ensemble, entry, single, images, answers, problems).items():
                for meme, heatmap, box in zip(out, maps, boxes, strict=True):
                    meme[problem]["heatmaps"][name] = heatmap
                    meme[problem]["regions"][name] = box
            continue
        if not isinstance(single, TextInput):
            continue  # a joint member (or one its family does not attribute) gets its Shapley share only
        model, tokenizer = ensemble.base_models[name], single.tokenizer
        if getattr(model, "quantized", False):  # set by optimize_for_inference(quantize_text=True)
            raise ExplanationUnavailableError(
                f"base model {name!r} is quantized to int8 and has no gradients to explain; load the ensemble "
                "without quantize_text=True to explain its answers"
            )
        heads = answering_heads(entry, problems)
        feeding = single.feeding
        for i, (meme, text) in enumerate(zip(out, texts, strict=True)):
            targets = {p: (h, int(answers[p][i])) for p, h in heads.items()}
            for problem, attributions in word_attributions(
                model, tokenizer, text, targets, max_length=feeding.max_length, pad_to=feeding.pad_to, steps=steps
            ).items():
                meme[problem]["words"][name] = [[w, a] for w, a in attributions.words]
    return out
