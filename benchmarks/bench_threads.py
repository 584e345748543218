#!/usr/bin/env python
"""The thread policy under load: a fixed slice of the demo's training, quiet and beside one CPU-bound process.

Runs ``scripts/train_text.py configs/text_demo.yaml training.epochs=3`` (the demo's text model, 3 epochs, a new
folder each run) four ways, in turn, ``--repeats`` times: quiet and loaded (one busy Python loop on a core),
each with the library's thread policy (``hf_memotion.threads``) and without it (``HF_MEMOTION_THREAD_POLICY=0``:
GNU OpenMP's default spin). Prints the median wall seconds of each and the ratios that matter: loaded / quiet
with the policy (the target: at most 2.5), and quiet with / quiet without (the policy must not slow a quiet
machine).

Usage:
    python benchmarks/bench_threads.py [--repeats 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _slice(epochs: int, policy: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(HF_MEMOTION_THREAD_POLICY="1" if policy else "0", HF_MEMOTION_PROGRESS="0")
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            str(ROOT / "scripts" / "train_text.py"),
            str(ROOT / "configs" / "text_demo.yaml"),
            f"training.epochs={epochs}",
            f"output_dir={folder}/run",
        ]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True, cwd=ROOT)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for loaded in (False, True):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
            try:
                for policy in (True, False):
                    key = f"{'loaded' if loaded else 'quiet'}, {'policy' if policy else 'no policy'}"
                    times.setdefault(key, []).append(_slice(args.epochs, policy))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"{os.cpu_count()} CPUs, {args.repeats} repeats, text demo x {args.epochs} epochs (median wall seconds)")
    for key, value in median.items():
        print(f"  {key:<22} {value:7.1f} s   (runs: {', '.join(f'{v:.1f}' for v in times[key])})")
    print(f"loaded / quiet, policy:        {median['loaded, policy'] / median['quiet, policy']:.2f}  (target <= 2.5)")
    print(f"loaded / quiet, no policy:     {median['loaded, no policy'] / median['quiet, no policy']:.2f}")
    print(f"quiet, policy / no policy:     {median['quiet, policy'] / median['quiet, no policy']:.2f}  (~1: no cost)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
