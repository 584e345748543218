"""Are the explanations true? Checked on the demo data, whose labels are planted where the generator put them.

The demo generator (:mod:`hf_memotion.data.demo`) draws each emotion's marker inside that emotion's quadrant of the
image (humour top left, sarcasm top right, offensive bottom left, motivational bottom right) and writes one cue word
per emotion and one for the sentiment into the text. So an explanation can be scored against the truth:

- **region share**: the part of a visual model's heat map for an emotion's answer (B and C) that lies in that
  emotion's quadrant, against the mean part in the three other quadrants (regions of the same size where nothing
  about the emotion was drawn), overall and per problem (a model that did not learn an emotion's marker cannot
  point at it: read the share beside the model's held-out F1); sentiment, told by the whole background, is not
  counted;
- **cue rank**: where the problem's cue word ranks among a text's words by the size of its attribution, as a
  fraction of the way down (0: first, 1: last), against the 0.5 a random ordering gives; and how often it ranks
  first, against ``1 / words``. Texts whose cue word OCR noise changed are left out;
- **deletion**: how much the model's probability of its answer falls when the most attributed part is removed,
  against removing a random part of the same size. Image: the 4 of 16 cells of the crop (a 4 x 4 grid) that hold
  the most heat, filled with the crop's mean colour, against 8 random draws of 4 cells. Text: the most attributed
  word deleted, against the mean over deleting each word.

Each figure is the mean over the memes and problems measured, per base model. ``scripts/explain.py ENSEMBLE
--faithfulness DEMO_DATA`` prints them and writes them as JSON.

Examples:
    >>> shares = quadrant_shares(np.pad(np.ones((2, 2)), ((0, 2), (0, 2))))  # all the heat in the top left
    >>> shares.tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    >>> cue_rank([("lol", 0.9), ("the", 0.1), ("cat", -0.3)], {"lol", "hilarious"})
    (0.0, 3)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from hf_memotion.data.demo import EMOTION_WORDS, MARKER_CORNERS, SENTIMENT_WORDS
from hf_memotion.data.images import load_rgb_image
from hf_memotion.explaining.explanations import heatmap_frame
from hf_memotion.tasks import EMOTIONS

__all__ = [
    "cue_rank",
    "cue_words",
    "demo_faithfulness",
    "format_faithfulness",
    "quadrant_shares",
]

#: Cells of the deletion grid (per side), and how many of them are deleted.
GRID, DELETED_CELLS, RANDOM_DRAWS = 4, 4, 8


def _emotion(problem: str) -> str | None:
    base = problem.removesuffix("_intensity")
    return base if base in EMOTIONS else None


def cue_words(problem: str) -> set[str]:
    """The demo generator's cue words of a problem (every class's): an emotion's, or the sentiment's."""
    groups = SENTIMENT_WORDS if problem == "sentiment" else EMOTION_WORDS[_emotion(problem)]
    return {word for group in groups for word in group}


def quadrant_shares(heatmap: np.ndarray) -> np.ndarray:
    """The share of a heat map's mass in each quadrant, ``[[top left, top right], [bottom left, bottom right]]``.

    An all-zero map gives zeros.
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    height, width = heatmap.shape
    total = heatmap.sum()
    shares = np.zeros((2, 2))
    if total <= 0:
        return shares
    rows, cols = np.arange(height) * 2 // height, np.arange(width) * 2 // width
    for r in range(2):
        for c in range(2):
            shares[r, c] = heatmap[np.ix_(rows == r, cols == c)].sum() / total
    return shares


def cue_rank(words: Sequence[tuple[str, float]], cues: set[str]) -> tuple[float, int] | None:
    """Where the first cue word ranks by the size of its attribution: ``(fraction of the way down, words)``.

    ``None`` when no word is a cue (OCR changed it) or the text has one word. Ties count against the cue.
    """
    values = [abs(a) for _, a in words]
    found = next((i for i, (w, _) in enumerate(words) if w.strip(".,!?'\"") in cues), None)
    if found is None or len(words) < 2:
        return None
    above = sum(v >= values[found] for j, v in enumerate(values) if j != found)
    return above / (len(words) - 1), len(words)


def _cells(size: int, grid: int = GRID) -> list[tuple[slice, slice]]:
    edges = [round(i * size / grid) for i in range(grid + 1)]
    return [(slice(edges[r], edges[r + 1]), slice(edges[c], edges[c + 1])) for r in range(grid) for c in range(grid)]


def _member_probability(model, problem_head: str, label: int, **inputs) -> np.ndarray:
    with torch.no_grad():
        logits = model(**inputs).problem_logits[problem_head]
    return logits.float().softmax(-1)[:, label].cpu().numpy()


def _visual_deletion(model, processor, image, heatmap, head, label, rng) -> tuple[float, float]:
    """(drop when the most-heated cells are filled, mean drop over random cells) of one visual answer."""
    pixels = processor([image], ten_crop=False)["pixel_values"].to(model.device, model.dtype)
    crop = processor.crop_size
    _, _, top, left = heatmap_frame(image.size, processor.resize_size, crop)
    cam = heatmap[top : top + crop, left : left + crop]
    cells = _cells(crop)
    mass = np.array([cam[rows, cols].sum() for rows, cols in cells])
    fill = pixels.mean(dim=(2, 3), keepdim=True)

    def filled(chosen: Iterable[int]) -> torch.Tensor:
        out = pixels.clone()
        for index in chosen:
            rows, cols = cells[index]
            out[..., rows, cols] = fill[..., 0:1, 0:1]
        return out

    draws = [rng.choice(len(cells), DELETED_CELLS, replace=False) for _ in range(RANDOM_DRAWS)]
    batch = torch.cat([pixels, filled(np.argsort(-mass, kind="stable")[:DELETED_CELLS]), *map(filled, draws)])
    probability = _member_probability(model, head, label, pixel_values=batch)
    return float(probability[0] - probability[1]), float(np.mean(probability[0] - probability[2:]))


def _text_deletion(model, tokenizer, words, head, label, max_length) -> tuple[float, float] | None:
    """(drop when the most attributed word is deleted, mean drop over deleting each word) of one textual answer."""
    from hf_memotion.models.text.preprocessing import encode_texts

    if len(words) < 2:
        return None
    texts = [" ".join(w for w, _ in words)]
    texts += [" ".join(w for j, (w, _) in enumerate(words) if j != i) for i in range(len(words))]
    encoded = tokenizer.pad(encode_texts(tokenizer, texts, max_length), padding_side="right", return_tensors="pt")
    inputs = {k: v.to(model.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
    probability = _member_probability(model, head, label, **inputs)
    top = int(np.argmax([a for _, a in words]))
    drops = probability[0] - probability[1:]
    return float(drops[top]), float(drops.mean())


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def demo_faithfulness(
    ensemble_or_pipeline: Any,
    demo_root: str | os.PathLike,
    *,
    n_memes: int = 50,
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Score the explanations of an ensemble's answers on demo test memes against the planted cues.

    Args:
        ensemble_or_pipeline: A ``meme-emotion`` pipeline, or an ensemble (folder, Hub id or model) to build one.
        demo_root: A demo dataset's root (``make_demo_data``'s output; its test release is read).
        n_memes: Test memes explained (the first ones).
        batch_size: Memes per pipeline call.
        seed: Seed of the random deletions.

    Returns:
        ``{"memes": n, "visual": {model: figures}, "textual": {model: figures}}`` (see the module docstring).
    """
    from transformers import Pipeline, pipeline

    from hf_memotion.data.memotion import load_memotion

    pipe = ensemble_or_pipeline
    if not isinstance(pipe, Pipeline):
        pipe = pipeline("meme-emotion", model=ensemble_or_pipeline, dtype=torch.float32)
    test = load_memotion(demo_root)["test"]
    test = test.select(range(min(n_memes, test.num_rows)))
    memes = [{"image": row["image"], "text": row["text"]} for row in test]
    answers = pipe(memes, batch_size=batch_size, explain=True)
    ensemble = pipe.model
    rng = np.random.default_rng(seed)
    visual: dict[str, dict[str, list]] = {}
    textual: dict[str, dict[str, list]] = {}
    for meme, answer in zip(memes, answers, strict=True):
        picture = load_rgb_image(meme["image"])
        for problem, explanation in answer["explanation"].items():
            label = ensemble.config.problem_labels[problem].index(explanation["label"])
            for entry in ensemble.config.base_models:
                name, head = entry["name"], (entry.get("aliases") or {}).get(problem, problem)
                model = ensemble.base_models[name]
                if name in explanation["heatmaps"]:
                    figures = visual.setdefault(
                        name, {"planted": [], "random": [], "top": [], "random_cells": [], "problems": {}}
                    )
                    heatmap = explanation["heatmaps"][name]
                    emotion = _emotion(problem)
                    if emotion is not None and heatmap.sum() > 0:
                        shares = quadrant_shares(heatmap)
                        column, row = MARKER_CORNERS[emotion]
                        figures["planted"].append(shares[row, column])
                        figures["random"].append((1.0 - shares[row, column]) / 3.0)
                        figures["problems"].setdefault(problem, []).append(shares[row, column])
                    processor = ensemble.preprocessors[name]
                    top, random = _visual_deletion(model, processor, picture, heatmap, head, label, rng)
                    figures["top"].append(top)
                    figures["random_cells"].append(random)
                if name in explanation["words"]:
                    figures = textual.setdefault(
                        name, {"rank": [], "first": [], "first_chance": [], "top": [], "random_word": []}
                    )
                    words = [(w, a) for w, a in explanation["words"][name]]
                    ranked = cue_rank(words, cue_words(problem))
                    if ranked is not None:
                        figures["rank"].append(ranked[0])
                        figures["first"].append(float(ranked[0] == 0.0))
                        figures["first_chance"].append(1.0 / ranked[1])
                    max_length = int(getattr(model.config, "max_length", 128))
                    deleted = _text_deletion(model, ensemble.preprocessors[name], words, head, label, max_length)
                    if deleted is not None:
                        figures["top"].append(deleted[0])
                        figures["random_word"].append(deleted[1])
    return {
        "memes": len(memes),
        "visual": {
            name: {
                "planted_share": _mean(f["planted"]),
                "random_region_share": _mean(f["random"]),
                "answers_measured": len(f["planted"]),
                "planted_share_per_problem": {p: _mean(v) for p, v in f["problems"].items()},
                "deletion_drop": _mean(f["top"]),
                "random_deletion_drop": _mean(f["random_cells"]),
            }
            for name, f in visual.items()
        },
        "textual": {
            name: {
                "cue_rank": _mean(f["rank"]),
                "cue_rank_chance": 0.5,
                "cue_first": _mean(f["first"]),
                "cue_first_chance": _mean(f["first_chance"]),
                "answers_measured": len(f["rank"]),
                "deletion_drop": _mean(f["top"]),
                "random_deletion_drop": _mean(f["random_word"]),
            }
            for name, f in textual.items()
        },
    }


def format_faithfulness(figures: Mapping[str, Any]) -> str:
    """The figures of :func:`demo_faithfulness` as two Markdown tables."""

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        f"Explanations of {figures['memes']} demo test memes against the planted cues",
        "",
        "| visual model | planted-quadrant share | random-quadrant share | drop, top cells gone | drop, random |",
        "|---|---|---|---|---|",
    ]
    for name, f in figures["visual"].items():
        lines.append(
            f"| {name} | {number(f['planted_share'])} | {number(f['random_region_share'])} | "
            f"{number(f['deletion_drop'])} | {number(f['random_deletion_drop'])} |"
        )
    for name, f in figures["visual"].items():
        per = ", ".join(f"{p} {number(v)}" for p, v in f["planted_share_per_problem"].items())
        lines.append(f"\n{name}: planted-quadrant share per problem: {per}")
    lines += [
        "",
        "| textual model | cue rank (0: first) | chance | cue first | chance | drop, top word gone | drop, random |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in figures["textual"].items():
        lines.append(
            f"| {name} | {number(f['cue_rank'])} | {number(f['cue_rank_chance'])} | {number(f['cue_first'])} | "
            f"{number(f['cue_first_chance'])} | {number(f['deletion_drop'])} | {number(f['random_deletion_drop'])} |"
        )
    return "\n".join(lines)
