#!/usr/bin/env python
"""Benchmark VisE label mining: posts/s and peak memory of steps 1 and 2 by corpus size, K-means GFLOP/s.

Usage:
    python scripts/bench_mining.py [--comments 10000 100000 1000000] [--output bench_mining.json]

For each corpus size (demo engagement posts, about 6.5 comments each, images referenced but not written)
a fresh process runs both steps and reports its peak RSS (Linux VmHWM): step 2 streams shard by shard, so
its cost should grow linearly and its memory stay flat. K-means is measured on the held-out comment
embeddings of the largest corpus: scikit-learn's Lloyd ``KMeans`` (the one mining uses), ``MiniBatchKMeans``
and faiss (when installed), as GFLOP/s (2 x n x k x d per iteration) against a dense fp32 matmul of the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COMMENTS_PER_POST = 6.5  # the demo corpus: 1 to 12 comments, 3% of posts without any
SETTINGS = {"comment_clusters": 1000, "reaction_clusters": 128, "holdout_fraction": 0.1, "embedding_dim": 128}


def probe(n_posts: int, folder: str, num_proc: int) -> dict:
    """In a fresh process: make the corpus, run step 1 and step 2, time them and read the peak RSS."""
    from hf_memotion.benchmarking import peak_rss_bytes
    from hf_memotion.data.engagement import engagement_shards
    from hf_memotion.vise import MiningConfig, make_demo_engagement
    from hf_memotion.vise.mining import fit_cluster_models, mine_labels

    baseline = peak_rss_bytes()  # the imported libraries
    root = make_demo_engagement(Path(folder) / "posts", n_posts=n_posts, n_shards=max(2, n_posts // 20000),
                                seed=0, write_images=False)  # fmt: skip
    config = MiningConfig(**SETTINGS)
    start = time.perf_counter()
    _, counts = fit_cluster_models(engagement_shards(root), config)
    step1 = time.perf_counter() - start
    rss1 = peak_rss_bytes()
    start = time.perf_counter()
    report = mine_labels(root, Path(folder) / "mined", config, num_proc=num_proc)  # step 1 again, then step 2
    both = time.perf_counter() - start
    step2 = max(both - step1, 1e-9)
    return {"posts": n_posts, "holdout_posts": counts["holdout_posts"], "comments": counts["holdout_comments"],
            "step1_s": step1, "step1_posts_per_s": n_posts / step1, "step2_s": step2,
            "step2_posts_per_s": report["posts_labelled"] / step2, "peak_rss_step1_mb": rss1 / 2**20,
            "peak_rss_mb": peak_rss_bytes() / 2**20, "imports_rss_mb": baseline / 2**20,
            "comment_clusters_used": report["comment_cluster_sizes"]["non_empty"]}  # fmt: skip


def kmeans_rates(n_points: int, k: int, d: int, matmul: float) -> list[dict]:
    """GFLOP/s of K-means implementations on the same random unit vectors."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_points, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = []
    candidates = {
        "scikit-learn KMeans (lloyd)": lambda: KMeans(k, n_init=1, max_iter=20, tol=0, random_state=0).fit(x),
        "scikit-learn MiniBatchKMeans": lambda: MiniBatchKMeans(
            k, n_init=1, max_iter=20, batch_size=4096, random_state=0
        ).fit(x),
    }
    try:
        import faiss

        def run_faiss():
            km = faiss.Kmeans(d, k, niter=20, seed=0, verbose=False, max_points_per_centroid=n_points)
            km.train(x)
            return km

        candidates["faiss Kmeans"] = run_faiss
    except ImportError:
        pass
    for name, fit in candidates.items():
        start = time.perf_counter()
        model = fit()
        seconds = time.perf_counter() - start
        iterations = getattr(model, "n_iter_", 20)
        if "MiniBatch" in name:  # each step sees one batch
            flops = 2.0 * getattr(model, "n_steps_", iterations) * 4096 * k * d
        else:
            flops = 2.0 * iterations * n_points * k * d
        rows.append({"implementation": name, "seconds": seconds, "iterations": int(iterations),
                     "gflops": flops / seconds / 1e9, "of_matmul": flops / seconds / 1e9 / matmul})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comments", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--kmeans-points", type=int, default=50_000)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(int(args.probe[0]), args.probe[1], int(args.probe[2]))))
        return 0
    from hf_memotion.benchmarking import matmul_gflops

    matmul = matmul_gflops()
    sizes = []
    for comments in args.comments:
        posts = int(comments / COMMENTS_PER_POST)
        with tempfile.TemporaryDirectory(prefix="hf_memotion_mining_") as folder:
            command = [sys.executable, __file__, "--probe", str(posts), folder, str(args.num_proc)]
            env = {**os.environ, "HF_MEMOTION_PROGRESS": "0"}
            out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        sizes.append(json.loads(out.stdout.strip().splitlines()[-1]) | {"corpus_comments": comments})
    rates = kmeans_rates(args.kmeans_points, SETTINGS["comment_clusters"], SETTINGS["embedding_dim"], matmul)
    print(f"# VisE mining benchmark — {datetime.date.today()}\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; dense fp32 matmul {matmul:.1f} GFLOP/s; "
          f"settings {SETTINGS}, {args.num_proc} processes in step 2\n")  # fmt: skip
    print(
        "| comments | posts | step 1 (s) | step 1 posts/s | step 2 (s) | step 2 posts/s | peak RSS (MB) "
        "| imports (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in sizes:
        print(f"| {row['corpus_comments']:,} | {row['posts']:,} | {row['step1_s']:.1f} | "
              f"{row['step1_posts_per_s']:,.0f} | "
              f"{row['step2_s']:.1f} | {row['step2_posts_per_s']:,.0f} | {row['peak_rss_mb']:,.0f} | "
              f"{row['imports_rss_mb']:,.0f} |")  # fmt: skip
    print(f"\nK-means, {args.kmeans_points:,} points, k={SETTINGS['comment_clusters']}, d={SETTINGS['embedding_dim']}, "
          "20 iterations:\n")  # fmt: skip
    print("| implementation | s | iterations | GFLOP/s | of matmul |\n|---|---|---|---|---|")
    for row in rates:
        print(f"| {row['implementation']} | {row['seconds']:.2f} | {row['iterations']} | {row['gflops']:.1f} | "
              f"{row['of_matmul']:.0%} |")  # fmt: skip
    if args.output:
        from hf_memotion.io_utils import atomic_write_text

        atomic_write_text(args.output, json.dumps({"matmul": matmul, "sizes": sizes, "kmeans": rates}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
