#!/usr/bin/env python
"""Benchmark the Gradio Space: how long one meme takes, in-process and through the served app.

Usage:
    python benchmarks/bench_space.py [--model outputs/demo/ensemble] [--repeats 30] [--output bench_space.json]

Three figures per run, on the Space's example memes, ten-crop on (as the Space serves):
``pipeline`` (decoded image -> probabilities), ``handler`` (what one click runs: the pipeline plus the
chart and the output schema), ``served`` (gradio_client against the app launched on 127.0.0.1: upload,
queue, handler, response). The demo ensemble is trained first when missing, as the Space does.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_app(model: str):
    os.environ["MEMOTION_MODEL"] = model
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    spec = importlib.util.spec_from_file_location("memotion_space_app", ROOT / "space" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _timed(fn, repeats: int, inputs: list) -> list[float]:
    fn(*inputs[0])  # warm-up: first calls pay for lazy initialisation
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(*inputs[i % len(inputs)])
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "mean_s": statistics.fmean(ordered),
        "n": len(ordered),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("MEMOTION_MODEL", "outputs/demo/ensemble"))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    app = _load_app(args.model)
    from gradio_client import Client, handle_file

    from hf_memotion.data import load_rgb_image

    examples = [(load_rgb_image(image), text) for image, text in app.EXAMPLES]
    results = {
        "pipeline": _summary(
            _timed(lambda i, t: app.PIPE({"image": i, "text": t}, ten_crop=app.TEN_CROP), args.repeats, examples)
        ),
        "handler": _summary(_timed(lambda i, t: app.analyse(app.PIPE, i, t), args.repeats, examples)),
    }
    app.launch(app.demo, server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.demo.local_url, verbose=False)
        files = [(handle_file(image), text) for image, text in app.EXAMPLES]
        served = _timed(lambda f, t: client.predict(f, t, api_name="/predict"), args.repeats, files)
        results["served"] = _summary(served)
    finally:
        app.demo.close()
    threads = torch.get_num_threads()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {threads} threads"
    print(f"Space latency for one meme, ten-crop {'on' if app.TEN_CROP else 'off'}; model {args.model}; {machine}")
    print(f"{'stage':<10} {'p50 (s)':>8} {'p95 (s)':>8} {'mean (s)':>9} {'n':>4}")
    for stage, row in results.items():
        print(f"{stage:<10} {row['p50_s']:>8.3f} {row['p95_s']:>8.3f} {row['mean_s']:>9.3f} {row['n']:>4}")
    if args.output:
        from hf_memotion.io_utils import atomic_write_text

        report = {"model": args.model, "ten_crop": app.TEN_CROP, "machine": machine, "results": results}
        atomic_write_text(args.output, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
