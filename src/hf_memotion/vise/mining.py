"""VisE pseudo-labels from engagement (Section 3.1-3.2 of the VisE paper), on one machine.

Step 1, **cluster generation**, on a held-out random subset of posts (kept out of pretraining):
comments become document features phi_C and are clustered with K-means (k=5000 in the paper);
reaction counts become L2-normalised 5-vectors clustered with K-means (k=128).
Step 2, **label creation**, for every other post: up to 100 sampled comments each get their
nearest comment cluster, and their normalised counts are the post's soft multi-label target; the
reaction vector's nearest cluster is its reaction label.

phi_C is :class:`~hf_memotion.vise.comment_embedding.CommentEmbedding` (TF-IDF over words and emoji, projected
by a truncated SVD fitted on at most ``fit_sample`` held-out comments), the same definition the Spark engine
applies in its executors. A comment with no known token has no comment signal: it gets no cluster, and a post
whose comments all lack signal gets an empty comment target (counted in the report).

K-means starts from the same points in both engines: the first ``k`` distinct vectors in the order of a hash of
(post id, comment position) (:func:`~hf_memotion.vise.comment_embedding.fit_sample_rank`), then runs
``kmeans_iterations`` Lloyd iterations: faiss's here when faiss-cpu is installed (the ``vise`` extra;
``benchmarks/bench_mining.py`` measures it), else scikit-learn's, and the same iterations distributed on Spark. So
both engines find the same clusters up to floating point and empty-cluster handling.

Malformed posts (no id, no image, comments not a list of strings, a known reaction count that is not a
non-negative integer) are skipped and listed with their row; reaction keys other than the five buttons (a real
export carries ``like``) are ignored and counted by name. The Spark engine applies the same checks (the same
function).

Layout of an output folder::

    clusters/clusters.npz, clusters/clusters.json   the fitted models (arrays + settings; no pickle)
    labels-<shard>.parquet                          one per input shard (held-out posts excluded)
    labels-<shard>.errors.jsonl                     that shard's malformed rows (row number, post id, why)
    mining.json                                     settings, per-shard counts, cluster-size statistics

Shards are written atomically and a finished shard is never redone: a killed run started again
with the same settings resumes where it stopped. Shards are labelled by ``num_proc`` processes.

The steps both engines share are in :mod:`hf_memotion.vise.mining_steps` (and the fitted models in
:mod:`hf_memotion.vise.cluster_models`); this module is the engine of one machine: reading shards, fitting step
1, labelling shards in processes, resuming, the report.

Examples:
    >>> MiningSpec().comment_clusters, MiningSpec().reaction_clusters  # the paper's k
    (5000, 128)
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from hf_memotion.data.engagement import REACTIONS, engagement_shards
from hf_memotion.io_utils import atomic_open, atomic_write_text, check_run_folder
from hf_memotion.vise.cluster_models import ClusterModels, MiningArtifactError
from hf_memotion.vise.comment_embedding import CommentEmbedding, fit_sample_rank
from hf_memotion.vise.mining_steps import (
    MINING_SIGNATURE,
    MiningSpec,
    check_post,
    corpus_description,
    fit_comment_embedding,
    fit_kmeans,
    is_holdout,
    is_labelled,
    kmeans_backend,
    label_features,
    label_posts,
    lloyd_sums,
    lloyd_update,
    reaction_rank,
    reaction_vector,
    sample_comments,
    size_statistics,
    summarize_details,
)

__all__ = [
    "ClusterModels",
    "MiningArtifactError",
    "MiningSpec",
    "check_post",
    "fit_cluster_models",
    "fit_kmeans",
    "is_holdout",
    "label_features",
    "label_posts",
    "lloyd_sums",
    "lloyd_update",
    "mine_labels",
    "reaction_vector",
    "sample_comments",
]

logger = logging.getLogger(__name__)


def _raw_rows(shard: Path) -> Iterator[tuple[int, Any]]:
    """``(line or row number, row)``; a row that is not even JSON comes back as an exception."""
    if shard.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row
        return
    with open(shard, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                yield number, err


def _posts(shard: Path, errors: list[dict]) -> Iterator[dict]:
    for number, row in _raw_rows(shard):
        problem = check_post(row)
        if problem is None:
            yield row
        else:
            post_id = row.get("post_id") if isinstance(row, dict) else None
            errors.append({"shard": shard.name, "row": number, "post_id": post_id, "error": problem})


def fit_cluster_models(shards: Sequence[Path], config: MiningSpec) -> tuple[ClusterModels, dict[str, int]]:
    """Step 1 on the held-out posts of ``shards``: phi_C and both K-means."""
    comments: list[tuple[float, str]] = []
    reactions: list[tuple[float, np.ndarray]] = []
    posts = 0
    ignored: list[dict] = []
    for shard in shards:
        for row in _posts(shard, ignored):
            if not is_holdout(row["post_id"], config.holdout_fraction, config.seed):
                continue
            posts += 1
            sampled = sample_comments(row.get("comments") or [], config.max_comments, row["post_id"], config.seed)
            comments += [(fit_sample_rank(config.seed, row["post_id"], i), c) for i, c in enumerate(sampled)]
            vector = reaction_vector(row.get("reactions") or {})
            if vector is not None:
                reactions.append((reaction_rank(config.seed, row["post_id"]), vector))
    if len(comments) < 2 or len(reactions) < 2:
        raise ValueError(
            f"the held-out subset ({posts} posts, holdout_fraction={config.holdout_fraction}) has {len(comments)} "
            f"comments and {len(reactions)} posts with reactions; raise holdout_fraction or add data"
        )
    comments.sort(key=lambda item: item[0])
    texts = [text for _, text in comments]
    models = ClusterModels(
        fit_comment_embedding(texts, config),
        comment_centroids=np.zeros((0, 0)),
        reaction_centroids=np.zeros((0, len(REACTIONS))),
        settings=asdict(config),
    )
    embedded = np.concatenate([models.embed_comments(texts[i : i + 8192]) for i in range(0, len(texts), 8192)])
    signal = CommentEmbedding.has_signal(embedded)
    if signal.sum() < 2:
        raise ValueError(f"only {int(signal.sum())} held-out comments hold a known word or emoji; add data")
    backend = kmeans_backend(config.kmeans_backend)
    models.comment_centroids = fit_kmeans(embedded[signal], config.comment_clusters, config, backend)
    reactions.sort(key=lambda item: item[0])
    models.reaction_centroids = fit_kmeans(
        np.stack([v for _, v in reactions]), config.reaction_clusters, config, backend
    )
    models.settings = {
        **asdict(config),
        "kmeans_backend_used": backend,
        "comment_clusters_fitted": len(models.comment_centroids),
        "reaction_clusters_fitted": len(models.reaction_centroids),
        "embedding_dim_fitted": int(embedded.shape[1]),
        "key": config.key(),
    }
    counts = {
        "holdout_posts": posts,
        "holdout_comments": len(comments),
        "holdout_comments_without_signal": int((~signal).sum()),
        "holdout_reactions": len(reactions),
    }
    return models, counts


def _digest(path: Path) -> str:

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(target: Path) -> Path:
    return target.with_suffix(".done.json")


def _shard_state(target: Path, key: str) -> str | None:
    """``None`` when the label shard ``target`` is finished and intact; else why it must be labelled (again)."""
    record_path = _record_path(target)
    if not target.is_file() and not record_path.is_file():
        return "new"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as err:
        return f"no valid completion record ({type(err).__name__})"
    if record.get("key") != key:
        return "labelled under other settings"
    if not target.is_file() or target.stat().st_size != record.get("bytes"):
        return f"{target.name} is missing or of another size than recorded"
    if _digest(target) != record.get("sha256"):
        return f"{target.name} does not match its recorded checksum"
    return None


def _add_counts(total: dict[str, Any], counts: Mapping[str, Any]) -> None:
    """Add one shard's counts (numbers, and ``extra_reaction_keys`` by name) to ``total``."""
    for key, value in counts.items():
        if isinstance(value, dict):
            named = total.setdefault(key, {})
            for name, n in value.items():
                named[name] = named.get(name, 0) + n
        else:
            total[key] = total.get(key, 0) + value


def _label_shard(
    shard: str, clusters: str, output: str, config: MiningSpec, batch: int = 2048, threads: int | None = None
) -> dict[str, Any]:
    """Label one shard into ``output`` (atomically), ``batch`` posts at a time; runs in a worker process.

    ``threads``: BLAS threads of this worker (``num_proc`` workers share the cores instead of oversubscribing them).
    """
    import threadpoolctl

    models = ClusterModels.load(clusters)
    models.settings["encoder_device"] = config.encoder_device  # this run's device, not the fitting run's
    source = Path(shard)
    errors: list[dict] = []
    posts = (row for row in _posts(source, errors) if is_labelled(row["post_id"], config))
    rows: list[dict] = []
    details: list[dict] = []
    with threadpoolctl.threadpool_limits(threads) if threads is not None else contextlib.nullcontext():
        while pending := list(itertools.islice(posts, batch)):
            labelled, found = label_posts(pending, models, config, str(source.parent))
            rows += labelled
            details += found
    counts = summarize_details(details)
    if rows:
        table = datasets.Dataset.from_list(rows, features=label_features())
    else:
        table = datasets.Dataset.from_dict({k: [] for k in label_features()}, features=label_features())
    target = Path(output)
    # the shard's malformed rows first: a finished label shard always has its error list beside it
    atomic_write_text(target.with_suffix(".errors.jsonl"), "".join(json.dumps(e) + "\n" for e in errors))
    with atomic_open(target, "wb") as handle:
        table.to_parquet(handle, batch_size=1000)  # explicit: no size estimate that stats every image file
    record = {
        "key": config.key(),
        "rows": len(rows),
        "bytes": target.stat().st_size,
        "sha256": _digest(target),
        "counts": counts,
    }
    atomic_write_text(_record_path(target), json.dumps(record))  # last: the shard counts as finished from here
    return {"shard": source.name, "posts": len(rows), "errors": errors}


def mine_labels(
    corpus: str | os.PathLike, output_dir: str | os.PathLike, config: MiningSpec | None = None, num_proc: int = 1
) -> dict[str, Any]:
    """Run both steps over a corpus of shards and write the output folder (resumable by shard).

    Args:
        corpus: A folder of engagement shards (:func:`~hf_memotion.data.engagement.engagement_shards`).
        output_dir: Where clusters, label shards, errors and the report go.
        config: Mining settings (default: the paper's).
        num_proc: Processes labelling shards in parallel.

    Returns:
        The report written to ``mining.json``: settings, counts, cluster-size statistics, malformed rows.
    """
    output = Path(output_dir)
    check_run_folder(output, MINING_SIGNATURE, "a mining run")  # before anything is read or written
    config = config or MiningSpec()
    shards = engagement_shards(corpus)
    clusters = output / "clusters"
    output.mkdir(parents=True, exist_ok=True)
    for stale in output.glob(".*.tmp"):  # left by a killed run (atomic writes rename only finished files)
        logger.info("removing %s, left by an interrupted run", stale)
        stale.unlink()
    for stale in clusters.glob(".*.tmp"):
        stale.unlink()
    if _reusable_clusters(clusters, output, config):
        logger.info("reusing the cluster models in %s (same settings)", clusters)
        holdout = json.loads((output / "holdout.json").read_text())
    else:
        for stale in output.glob("labels-*"):  # labels of other clusters must not be mixed in
            stale.unlink()
        models, holdout = fit_cluster_models(shards, config)
        atomic_write_text(output / "holdout.json", json.dumps(holdout))
        models.save(clusters)
    targets = {shard: output / f"labels-{shard.stem}.parquet" for shard in shards}
    pending = []
    for shard, target in targets.items():
        reason = _shard_state(target, config.key())
        if reason is not None:
            if reason != "new":
                logger.warning("labelling %s again: %s", shard.name, reason)
            pending.append(shard)
    logger.info("%d of %d shards to label (%d finished)", len(pending), len(shards), len(shards) - len(pending))
    results = []
    if pending:
        args = [(str(s), str(clusters), str(targets[s]), config) for s in pending]
        if num_proc > 1:
            threads = [max(1, (os.cpu_count() or 1) // num_proc)] * len(args)
            on_gpu = bool(config.comment_encoder) and config.encoder_device != "cpu"
            context = multiprocessing.get_context("spawn") if on_gpu else None  # CUDA does not survive a fork
            with ProcessPoolExecutor(max_workers=num_proc, mp_context=context) as pool:
                results = list(pool.map(_label_shard, *zip(*args, strict=True), [2048] * len(args), threads))
        else:
            results = [_label_shard(*a) for a in args]
    for result in results:
        result.pop("errors")
    errors = [
        json.loads(line) for t in targets.values() for line in t.with_suffix(".errors.jsonl").read_text().splitlines()
    ]
    if errors:
        logger.warning("%d malformed rows skipped (listed in %s/labels-*.errors.jsonl)", len(errors), output)
    report = {"corpus": corpus_description(corpus), **_report(output, targets, config, holdout, results, errors)}
    atomic_write_text(output / "mining.json", json.dumps(report, indent=2))
    return report


def _reusable_clusters(clusters: Path, output: Path, config: MiningSpec) -> bool:
    """Whether fitted cluster models of the same settings are there and intact (a damaged one is said, and refit)."""
    if not (clusters / "clusters.json").is_file():
        return False
    try:
        models = ClusterModels.load(clusters)
        json.loads((output / "holdout.json").read_text())
    except (MiningArtifactError, OSError, ValueError) as err:
        logger.warning("fitting the cluster models again: %s", err)
        return False
    return models.settings.get("key") == config.key()


def _report(output: Path, targets: Mapping[Path, Path], config: MiningSpec, holdout, results, errors) -> dict:
    models = ClusterModels.load(output / "clusters")
    labels = datasets.load_dataset("parquet", data_files=[str(t) for t in targets.values()], split="train")
    comment_sizes = np.zeros(len(models.comment_centroids))
    for ids, weights in zip(labels["comment_clusters"], labels["comment_weights"], strict=True):
        np.add.at(comment_sizes, np.asarray(ids, dtype=int), np.asarray(weights) > 0)
    reactions = np.asarray(labels["reaction_cluster"])
    reaction_sizes = np.bincount(reactions[reactions >= 0], minlength=len(models.reaction_centroids))
    counts: dict[str, Any] = {
        "comments_without_signal": 0,
        "posts_without_comment_signal": 0,
        "extra_reaction_keys": {},
    }
    for target in targets.values():
        _add_counts(counts, json.loads(_record_path(target).read_text()).get("counts", {}))
    return {
        "engine": "local",
        "settings": models.settings,
        "holdout": holdout,
        "posts_labelled": len(labels),
        # an empty comment target: no comment at all, or no comment with a known word or emoji
        "posts_without_comments": int(sum(1 for ids in labels["comment_clusters"] if len(ids) == 0)),
        "posts_without_comment_signal": counts["posts_without_comment_signal"],
        "comments_without_signal": counts["comments_without_signal"],
        "extra_reaction_keys": counts["extra_reaction_keys"],
        "posts_without_reactions": int((reactions < 0).sum()),
        "malformed_rows": len(errors),
        "malformed_examples": errors[:20],
        "shards_labelled_this_run": [r["shard"] for r in results],
        "comment_cluster_sizes": size_statistics(comment_sizes),
        "reaction_cluster_sizes": size_statistics(reaction_sizes.astype(float)),
    }
