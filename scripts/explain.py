#!/usr/bin/env python
"""Explain a saved ensemble's answers for one meme, or check its explanations against the demo's planted cues.

Usage:
    python scripts/explain.py ENSEMBLE --image PATH --text TEXT [--problem humour] [--out FOLDER]
    python scripts/explain.py ENSEMBLE --faithfulness DEMO_DATA [--memes 50] [--out FOLDER]

One meme: prints each answer's score, its members' and modalities' Shapley shares and each textual model's most
attributed words, and writes ``heatmap_<model>_<problem>.png`` (the heat map over the meme) and
``explanation.json`` to ``--out`` (default ``outputs/explain``). ``--faithfulness`` explains the first ``--memes``
test memes of a demo dataset (e.g. ``outputs/demo_data``) and prints and writes (``faithfulness.json``) how much of
the attribution lands on the planted regions and cue words, against random ones, and what deleting them does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import hf_memotion  # noqa: F401  (registers the "meme-emotion" task)
from hf_memotion.hub.connectivity import offline_if_unreachable
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.logs import configure_logging


def _explain_one(pipe, image: str, text: str, problem: str | None, out: Path) -> None:
    from hf_memotion.data.images import load_rgb_image
    from hf_memotion.explaining import overlay_heatmap

    picture = load_rgb_image(image)
    answer = pipe({"image": picture, "text": text}, explain=True)
    explanation = answer["explanation"]
    problems = [problem] if problem else list(explanation)
    unknown = [p for p in problems if p not in explanation]
    if unknown:
        sys.exit(f"error: --problem {unknown[0]} is not one of the ensemble's problems {list(explanation)}")
    out.mkdir(parents=True, exist_ok=True)
    for name in problems:
        e = explanation[name]
        shares = ", ".join(f"{m} {v:+.3f}" for m, v in e["members"].items())
        print(f"{name}: {e['label']} ({e['score']:.3f}; {e['baseline']:.3f} with no member's information; {shares})")
        for model, words in e["words"].items():
            top = sorted(words, key=lambda wa: -wa[1])[:3]
            print(f"  {model} words: " + ", ".join(f"{w} {a:+.3f}" for w, a in top))
        for model, heatmap in e["heatmaps"].items():
            file = out / f"heatmap_{model}_{name}.png"
            overlay_heatmap(picture, heatmap, e["regions"][model]).save(file)
            print(f"  {model} heat map: {file}")
    listed = {p: {**explanation[p], "heatmaps": sorted(explanation[p]["heatmaps"])} for p in problems}  # names only
    atomic_write_text(out / "explanation.json", json.dumps(listed, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ensemble folder or Hub id")
    parser.add_argument("--image", help="meme image file")
    parser.add_argument("--text", help="the meme's text")
    parser.add_argument("--problem", help="explain only this problem (e.g. humour_intensity)")
    parser.add_argument("--faithfulness", metavar="DEMO_DATA", help="a demo dataset's root: score the explanations")
    parser.add_argument("--memes", type=int, default=50, help="demo test memes explained (--faithfulness)")
    parser.add_argument("--out", default="outputs/explain", help="folder for the heat maps and JSON")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    configure_logging()
    offline_if_unreachable()
    if args.faithfulness is None and (args.image is None or args.text is None):
        parser.error("give --image and --text (one meme), or --faithfulness DEMO_DATA")
    if args.memes < 1:
        parser.error(f"--memes must be at least 1, got {args.memes}")
    import torch

    from hf_memotion.hardware import resolve_device
    from hf_memotion.pipelines import MemeInputError, meme_emotion_pipeline

    out = Path(args.out)
    try:
        pipe = meme_emotion_pipeline(args.model, dtype=torch.float32, device=resolve_device(args.device))
        if args.faithfulness is None:
            _explain_one(pipe, args.image, args.text, args.problem, out)
            return 0
        from hf_memotion.explaining.faithfulness import demo_faithfulness, format_faithfulness

        root = Path(args.faithfulness)
        if not (root / "memotion_test_release").is_dir():
            sys.exit(f"error: {root} has no memotion_test_release/: give a demo dataset's root (outputs/demo_data)")
        figures = demo_faithfulness(pipe, root, n_memes=args.memes)
    except (MemeInputError, FileNotFoundError, OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(format_faithfulness(figures))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "faithfulness.json", json.dumps(figures, indent=2) + "\n")
    print(f"written: {out / 'faithfulness.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
