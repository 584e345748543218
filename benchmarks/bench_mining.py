#!/usr/bin/env python
"""Benchmark VisE label mining on realistic text: step 1 and step 2 throughput, memory, and the engines' agreement.

Usage:
    python benchmarks/bench_mining.py [--comments 100000 1000000] [--output bench_mining.json]
    python benchmarks/bench_mining.py --comments 20000 --spark-comments 20000 --spark-k5000-comments 0   # quick

Corpora come from :func:`hf_memotion.data.realistic_engagement.make_realistic_engagement`: a Zipf vocabulary of
100,000 words over 64 latent topics, emoji, emoji-only and gibberish comments, typos, about 20 comments per post
(heavy-tailed), extra ``like`` reaction keys. Settings are the paper's: k = 5000 comment and 128 reaction clusters,
10% of posts held out for step 1, 256-dimensional phi_C. Each corpus size runs in a fresh process and reports:

- step 1: fitting phi_C (vocabulary, IDF, SVD), embedding the held-out comments, K-means (faiss, from the
  engines' shared initial centroids);
- **step 2 per core**: :func:`~hf_memotion.vise.mining.label_posts` on one thread (BLAS and torch limited to 1)
  over 4,096 posts, in posts/s, the median of three runs, interleaved with three runs of the float32 centroid search
  (``search_method="float32"``: the ratio is the int8 pre-filter's gain,
  :class:`~hf_memotion.vise.centroid_search.CentroidSearch`), and the baseline of before (the vectorizer and
  projection applied post by post, the projection up-cast and copied each time) on the first 100 of them; and the
  whole step 2 (``mine_labels``) with 1 and 2 processes (``num_proc`` scaling);
- peak RSS of the process (Linux VmHWM).

Then, on the ``--spark-comments`` corpus, the Spark engine (``local[2]``) against the local engine: adjusted Rand
index of each post's top comment cluster and of its reaction cluster, and both wall times; and a Spark run with
k = 5000 on a ``--spark-k5000-comments`` corpus (default 200,000) with the documented memory (2 GB JVM).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COMMENTS_PER_POST = 20.0  # the paper's corpus: 20.25 comments per image on average
PAPER = {"comment_clusters": 5000, "reaction_clusters": 128, "holdout_fraction": 0.1, "embedding_dim": 256}


def _corpus(folder: Path, comments: int, shards: int) -> Path:
    from hf_memotion.data.realistic_engagement import make_realistic_engagement

    return make_realistic_engagement(
        folder / "posts",
        n_posts=max(50, int(comments / COMMENTS_PER_POST)),
        n_shards=shards,
        comments_per_post=COMMENTS_PER_POST,
        seed=0,
    )


def _per_post_baseline(models, posts, config) -> float:
    """Posts/s of the code of before: a vectorizer and the projection applied post by post (up-cast, copied)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from hf_memotion.vise.centroid_search import CentroidSearch
    from hf_memotion.vise.comment_embedding import tokenize
    from hf_memotion.vise.mining import sample_comments

    vocabulary = {w: i for i, w in enumerate(models.embedding.vocabulary)}
    vectorizer = TfidfVectorizer(
        vocabulary=vocabulary, tokenizer=tokenize, lowercase=False, token_pattern=None, sublinear_tf=True
    )
    vectorizer.idf_ = models.embedding.idf.astype(np.float64)
    dense = CentroidSearch(models.comment_centroids, method="float32")
    start = time.perf_counter()
    for post in posts:
        sampled = sample_comments(post.get("comments") or [], config.max_comments, post["post_id"], config.seed)
        if sampled:
            projected = np.asarray(vectorizer.transform(sampled) @ models.embedding.components.T, dtype=np.float32)
            projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
            dense(projected)
    return len(posts) / (time.perf_counter() - start)


def probe(comments: int, folder: str) -> dict:
    """In a fresh process: the corpus, step 1 (timed in parts), step 2 per core and with 1 and 2 processes."""
    import threadpoolctl

    from hf_memotion.benchmarking import peak_rss_bytes
    from hf_memotion.data.engagement import engagement_shards
    from hf_memotion.vise import MiningSpec
    from hf_memotion.vise.mining import _posts, fit_cluster_models, is_holdout, label_posts, mine_labels

    base = Path(folder)
    start = time.perf_counter()
    root = _corpus(base, comments, shards=4)
    generated = time.perf_counter() - start
    imports_rss = peak_rss_bytes()
    config = MiningSpec(**PAPER)
    shards = engagement_shards(root)
    start = time.perf_counter()
    models, counts = fit_cluster_models(shards, config)
    step1 = time.perf_counter() - start
    out = base / "mined"
    models.save(out / "clusters")
    (out / "holdout.json").write_text(json.dumps(counts))
    posts = [
        r for s in shards for r in _posts(s, []) if not is_holdout(r["post_id"], config.holdout_fraction, config.seed)
    ][:4096]
    n_comments = sum(min(len(p.get("comments") or []), config.max_comments) for p in posts)
    rates: dict[str, list[float]] = {"auto": [], "float32": []}
    with threadpoolctl.threadpool_limits(1):  # BLAS, and torch's OpenMP pool with it
        for method in rates:  # warm-up: a first full batch grows the process's memory, each search is prepared
            models.search_method = method
            label_posts(posts, models, config)
        for _ in range(3):  # interleaved: both paths see the same moments of a noisy machine
            for method, measured in rates.items():
                models.search_method = method
                start = time.perf_counter()
                label_posts(posts, models, config)
                measured.append(len(posts) / (time.perf_counter() - start))
        models.search_method = "auto"
        search = models._search("comment_centroids")
        baseline = _per_post_baseline(models, posts[:100], config)
    per_core, dense = float(np.median(rates["auto"])), float(np.median(rates["float32"]))
    whole = {}
    for num_proc in (1, 2):
        target = base / f"mined_{num_proc}"
        shutil.copytree(out, target)  # the same cluster models: only step 2 runs
        start = time.perf_counter()
        report = mine_labels(root, target, config, num_proc=num_proc)
        whole[num_proc] = report["posts_labelled"] / (time.perf_counter() - start)
    return {
        "comments": comments,
        "posts": report["posts_labelled"] + counts["holdout_posts"],
        "generated_s": generated,
        "holdout_comments": counts["holdout_comments"],
        "vocabulary": len(models.embedding.vocabulary),
        "step1_s": step1,
        "comment_clusters": len(models.comment_centroids),
        "step2_sample_posts": len(posts),
        "step2_sample_comments_per_post": n_comments / max(1, len(posts)),
        "step2_posts_per_s_per_core": per_core,
        "step2_runs_per_core": rates["auto"],
        "search_method": search.method,
        "candidates_per_comment": search.candidates_per_point,
        "step2_float32_search_posts_per_s_per_core": dense,
        "step2_float32_runs": rates["float32"],
        "baseline_posts_per_s_per_core": baseline,
        "step2_posts_per_s_1_process": whole[1],
        "step2_posts_per_s_2_processes": whole[2],
        "comments_without_signal": report["comments_without_signal"],
        "extra_reaction_keys": report["extra_reaction_keys"],
        "peak_rss_mb": peak_rss_bytes() / 2**20,
        "imports_rss_mb": imports_rss / 2**20,
    }


def _top_clusters(folder: Path, pattern: str) -> tuple[dict, dict]:
    import datasets

    files = sorted(str(p) for p in folder.glob(pattern))
    labels = datasets.load_dataset("parquet", data_files=files, split="train").to_dict()
    top = {
        p: (ids[int(np.argmax(w))] if ids else -1)
        for p, ids, w in zip(labels["post_id"], labels["comment_clusters"], labels["comment_weights"], strict=True)
    }
    return top, dict(zip(labels["post_id"], labels["reaction_cluster"], strict=True))


def spark_agreement(comments: int, folder: str, k: int) -> dict:
    """Local and Spark engines on the same corpus: ARI of the top comment and the reaction clusters, wall times."""
    from sklearn.metrics import adjusted_rand_score

    from hf_memotion.vise import MiningSpec
    from hf_memotion.vise.mining import mine_labels
    from hf_memotion.vise.spark_mining import mine_labels_on_spark

    base = Path(folder)
    root = _corpus(base, comments, shards=4)
    config = MiningSpec(**{**PAPER, "comment_clusters": k})
    start = time.perf_counter()
    mine_labels(root, base / "local", config, num_proc=2)
    local_s = time.perf_counter() - start
    start = time.perf_counter()
    report = mine_labels_on_spark(str(root), base / "spark", config, cores=2, memory="2g")
    spark_s = time.perf_counter() - start
    local_top, local_reaction = _top_clusters(base / "local", "labels-*.parquet")
    spark_top, spark_reaction = _top_clusters(base / "spark", "labels-part-*.parquet")
    posts = sorted(local_top)
    if sorted(spark_top) != posts:
        raise RuntimeError("the engines labelled different posts")
    return {
        "comments": comments,
        "k": k,
        "posts": len(posts),
        "local_s": local_s,
        "spark_s": spark_s,
        "ari_top_comment_cluster": adjusted_rand_score([local_top[p] for p in posts], [spark_top[p] for p in posts]),
        "ari_reaction_cluster": adjusted_rand_score(
            [local_reaction[p] for p in posts], [spark_reaction[p] for p in posts]
        ),
        "spark_comment_clusters": report["settings"]["comment_clusters_fitted"],
    }


def spark_k5000(comments: int, folder: str) -> dict:
    """A Spark run (local[2], 2 GB JVM) with the paper's k = 5000 on a corpus of ``comments`` comments."""
    from hf_memotion.vise import MiningSpec
    from hf_memotion.vise.spark_mining import mine_labels_on_spark

    base = Path(folder)
    root = _corpus(base, comments, shards=4)
    # a fifth held out: 40,000 held-out comments for 5,000 centroids at 200,000 comments
    config = MiningSpec(**{**PAPER, "holdout_fraction": 0.2})
    start = time.perf_counter()
    report = mine_labels_on_spark(str(root), base / "spark", config, cores=2, memory="2g")
    return {
        "comments": comments,
        "seconds": time.perf_counter() - start,
        "jvm_memory": "2g",
        "comment_clusters": report["settings"]["comment_clusters_fitted"],
        "holdout_comments": report["holdout"]["holdout_comments"],
        "non_empty_clusters": report["comment_cluster_sizes"]["non_empty"],
        "posts_labelled": report["posts_labelled"],
    }


def _fresh(kind: str, *args) -> dict:
    with tempfile.TemporaryDirectory(prefix="hf_memotion_mining_") as folder:
        command = [sys.executable, __file__, "--probe", kind, folder, *map(str, args)]
        env = {**os.environ, "HF_MEMOTION_PROGRESS": "0"}
        out = subprocess.run(command, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"{kind} probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comments", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--spark-comments", type=int, default=100_000, help="0: no engine comparison")
    parser.add_argument("--spark-k", type=int, default=5000, help="comment clusters of the engine comparison")
    parser.add_argument("--spark-k5000-comments", type=int, default=200_000, help="0: skip that run")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        kind, folder, *rest = args.probe
        if kind == "sizes":
            result = probe(int(rest[0]), folder)
        elif kind == "agreement":
            result = spark_agreement(int(rest[0]), folder, int(rest[1]))
        else:
            result = spark_k5000(int(rest[0]), folder)
        print(json.dumps(result))
        return 0
    from hf_memotion.benchmarking import matmul_gflops

    matmul = matmul_gflops()
    sizes = [_fresh("sizes", n) for n in args.comments]
    agreement = _fresh("agreement", args.spark_comments, args.spark_k) if args.spark_comments else None
    big = _fresh("k5000", args.spark_k5000_comments) if args.spark_k5000_comments else None
    print(f"# VisE mining benchmark — {datetime.date.today()}\n")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; dense fp32 matmul {matmul:.1f} GFLOP/s; "
        f"settings {PAPER}; realistic corpora (100,000-word Zipf vocabulary, emoji, typos)\n"
    )
    print(
        "| comments | posts | vocabulary | step 1 (s) | step 2 posts/s per core | float32 search (per core) | "
        "before (per core) | step 2 posts/s, 1 process | 2 processes | peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in sizes:
        print(
            f"| {row['comments']:,} | {row['posts']:,} | {row['vocabulary']:,} | {row['step1_s']:.1f} | "
            f"**{row['step2_posts_per_s_per_core']:,.0f}** ({row['step2_sample_comments_per_post']:.1f} "
            f"comments/post; {row['search_method']} search, {row['candidates_per_comment']:.1f} candidates "
            f"re-ranked per comment) | {row['step2_float32_search_posts_per_s_per_core']:,.0f} "
            f"(x{row['step2_posts_per_s_per_core'] / row['step2_float32_search_posts_per_s_per_core']:.2f}) | "
            f"{row['baseline_posts_per_s_per_core']:,.1f} | "
            f"{row['step2_posts_per_s_1_process']:,.0f} | {row['step2_posts_per_s_2_processes']:,.0f} | "
            f"{row['peak_rss_mb']:,.0f} |"
        )
    if agreement:
        print(
            f"\nEngines on {agreement['comments']:,} comments (k={agreement['k']}): ARI top comment cluster "
            f"{agreement['ari_top_comment_cluster']:.3f}, reaction cluster {agreement['ari_reaction_cluster']:.3f}; "
            f"local {agreement['local_s']:.0f} s, Spark local[2] {agreement['spark_s']:.0f} s"
        )
    if big:
        print(
            f"\nSpark, k={big['comment_clusters']} on {big['comments']:,} comments ({big['holdout_comments']:,} "
            f"held out), JVM {big['jvm_memory']}: {big['seconds']:.0f} s, {big['non_empty_clusters']} non-empty "
            "clusters"
        )
    if args.output:
        from hf_memotion.io_utils import atomic_write_text

        atomic_write_text(
            args.output,
            json.dumps({"matmul": matmul, "sizes": sizes, "agreement": agreement, "spark_k5000": big}, indent=2),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
