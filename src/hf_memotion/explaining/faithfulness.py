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
from hf_memotion.explaining.explanations import answering_heads, attributed_input, place_heatmap
from hf_memotion.families.inputs import ImageInput, TextInput
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


def _probabilities(model, **inputs) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return model(**inputs).problem_probabilities()


def _visual_records(model, processor, image, entry, explanation, rng) -> list[dict[str, Any]]:
    """One record per answer of a visual model: its planted-quadrant share (emotions) and its deletion drops.

    The image is preprocessed once, and every answer's deletions (the top cells, then each random draw) run in one
    forward with the original crop.
    """
    pixels = processor([image], ten_crop=False)["pixel_values"].to(model.device, model.dtype)
    cells = _cells(processor.crop_size)
    fill = pixels.mean(dim=(2, 3), keepdim=True)

    def filled(chosen: Iterable[int]) -> torch.Tensor:
        out = pixels.clone()
        for index in chosen:
            rows, cols = cells[index]
            out[..., rows, cols] = fill
        return out

    heads = answering_heads(entry, list(explanation))
    records, batches = [], [pixels]
    for problem in heads:
        cam = explanation[problem]["heatmaps"][entry.name]  # the crop the model saw
        mass = np.array([cam[rows, cols].sum() for rows, cols in cells])
        draws = [rng.choice(len(cells), DELETED_CELLS, replace=False) for _ in range(RANDOM_DRAWS)]
        batches += [filled(np.argsort(-mass, kind="stable")[:DELETED_CELLS]), *map(filled, draws)]
        emotion = _emotion(problem)
        share = None
        if emotion is not None and cam.sum() > 0:
            column, row = MARKER_CORNERS[emotion]
            heatmap = place_heatmap(cam, explanation[problem]["regions"][entry.name], image.size)  # the meme's frame
            share = float(quadrant_shares(heatmap)[row, column])
        records.append({"problem": problem, "share": share})
    found = _probabilities(model, pixel_values=torch.cat(batches))
    per_answer = 1 + RANDOM_DRAWS
    for k, record in enumerate(records):
        problem = record["problem"]
        label = model.config.problem_labels[heads[problem]].index(explanation[problem]["label"])
        probability = found[heads[problem]][:, label]
        deleted = probability[1 + k * per_answer : 1 + (k + 1) * per_answer]
        record["drop_top"] = float(probability[0] - deleted[0])
        record["drop_random"] = float(np.mean(probability[0] - deleted[1:]))
    return records


def _text_records(model, text: TextInput, entry, explanation) -> list[dict[str, Any]]:
    """One record per answer of a textual model: its cue word's rank and its deletion drops.

    The text with each word deleted in turn runs once for every answer (the words are the same for all of them).
    """
    heads = answering_heads(entry, list(explanation))
    words = [w for w, _ in next(iter(explanation.values()))["words"][entry.name]]
    found = None
    if len(words) >= 2:
        texts = [" ".join(words)] + [" ".join(w for j, w in enumerate(words) if j != i) for i in range(len(words))]
        encoded = text.encode(None, texts, ten_crop=False)
        found = _probabilities(
            model, **{k: v.to(model.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
        )
    records = []
    for problem, head in heads.items():
        attributions = [(w, a) for w, a in explanation[problem]["words"][entry.name]]
        record = {"problem": problem, "rank": cue_rank(attributions, cue_words(problem))}
        if found is not None:
            label = model.config.problem_labels[head].index(explanation[problem]["label"])
            drops = found[head][0, label] - found[head][1:, label]
            record["drop_top"] = float(drops[int(np.argmax([a for _, a in attributions]))])
            record["drop_random"] = float(drops.mean())
        records.append(record)
    return records


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
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
    from hf_memotion.ensemble import MemotionEnsembleModel

    pipe = ensemble_or_pipeline
    if not isinstance(pipe, Pipeline):
        model = ensemble_or_pipeline
        if isinstance(model, str | os.PathLike):  # the folder checked before anything in it is parsed
            model = MemotionEnsembleModel.from_pretrained(model, dtype=torch.float32)
        pipe = pipeline("meme-emotion", model=model)
    test = load_memotion(demo_root)["test"]
    test = test.select(range(min(n_memes, test.num_rows)))
    memes = [{"image": row["image"], "text": row["text"]} for row in test]
    answers = pipe(memes, batch_size=batch_size, explain=True)
    ensemble = pipe.model
    rng = np.random.default_rng(seed)
    records: dict[str, list[dict[str, Any]]] = {e.name: [] for e in ensemble.config.members}
    attributed = {e.name: attributed_input(ensemble, e) for e in ensemble.config.members}
    for meme, answer in zip(memes, answers, strict=True):
        picture = load_rgb_image(meme["image"])
        for entry in ensemble.config.members:
            model, single = ensemble.base_models[entry.name], attributed[entry.name]
            if isinstance(single, ImageInput):
                records[entry.name] += _visual_records(
                    model, single.processor, picture, entry, answer["explanation"], rng
                )
            elif isinstance(single, TextInput):
                records[entry.name] += _text_records(model, single, entry, answer["explanation"])
            # a joint member: its Shapley share is measured, its inputs are not attributed
    visual, textual = {}, {}
    for entry in ensemble.config.members:
        rows = records[entry.name]
        deleted = [r for r in rows if "drop_top" in r]
        drops = {
            "deletion_drop": _mean(r["drop_top"] for r in deleted),
            "random_deletion_drop": _mean(r["drop_random"] for r in deleted),
        }
        if isinstance(attributed[entry.name], ImageInput):
            shared = [r for r in rows if r["share"] is not None]
            problems = dict.fromkeys(r["problem"] for r in shared)
            visual[entry.name] = {
                "planted_share": _mean(r["share"] for r in shared),
                "random_region_share": _mean((1.0 - r["share"]) / 3.0 for r in shared),  # the other quadrants' mean
                "answers_measured": len(shared),
                "planted_share_per_problem": {
                    p: _mean(r["share"] for r in shared if r["problem"] == p) for p in problems
                },
                **drops,
            }
        elif isinstance(attributed[entry.name], TextInput):
            ranked = [r["rank"] for r in rows if r["rank"] is not None]
            textual[entry.name] = {
                "cue_rank": _mean(rank for rank, _ in ranked),
                "cue_rank_chance": 0.5,
                "cue_first": _mean(float(rank == 0.0) for rank, _ in ranked),
                "cue_first_chance": _mean(1.0 / words for _, words in ranked),
                "answers_measured": len(ranked),
                **drops,
            }
    return {"memes": len(memes), "visual": visual, "textual": textual}


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
