"""The two VisE mining steps as an Apache Spark job, with the single-machine engine's meaning.

Everything that decides a label is the library's own Python, run in the executors (``mapInPandas``): the post
checks and the extra-reaction-key policy (:func:`~hf_memotion.vise.mining_steps.check_post`), the held-out rule and
comment sampling, phi_C (:class:`~hf_memotion.vise.comment_embedding.CommentEmbedding`: words and emoji, TF-IDF,
the SVD projection) and step 2 (:func:`~hf_memotion.vise.mining_steps.label_posts`). So both engines produce the same
labels up to K-means' floating point:

1. **Read** through Spark's own readers: local paths, ``file://``, ``hdfs://``, ``s3a://`` (the shards are listed
   with Hadoop's ``FileSystem``); jsonl is read as text and parsed in Python (so a malformed line is reported, not
   dropped), parquet with Spark's reader (embedded image bytes kept).
2. **Fit phi_C once**, on the driver, on the ``fit_sample`` held-out comments of lowest hash rank (the same ones
   the local engine takes), and broadcast it (vocabulary, IDF, ``dim x V`` float32 projection: 100 MB at a
   100,000-word vocabulary).
3. **K-means on the projected dense vectors** (``k x dim``, not ``k x vocabulary``): the same initial centroids as
   the local engine (the first ``k`` distinct vectors in hash-rank order) and ``kmeans_iterations`` Lloyd
   iterations, each a ``treeReduce`` of per-partition sums computed with a matrix product (written here because
   MLlib's ``KMeans`` takes no initial centroids and measures point-centre distances one pair at a time). Memory
   per task: the centroids and their sums, ``2 x k x dim`` (10 MB at k = 5000, dim = 256). The reaction K-means
   (5-dimensional) runs on the driver with the local engine's function.
4. **Label** every other post in the executors and write ``labels-part-XXXXX.parquet`` in
   :func:`~hf_memotion.vise.mining_steps.label_features`' schema, the models in ``clusters/`` (the local engine's
   format), and ``mining.json``.

A comment with no known token has no comment signal (no cluster; documented in
:mod:`hf_memotion.vise.comment_embedding`), as on one machine. Fault tolerance is Spark's (failed tasks are
retried); the output is written to a temporary folder and moved into place, so a failed job leaves no partial
labels. ``docs/vise_spark.md`` gives the executor sizes and a cluster run.

Examples:
    >>> # spark = SparkSession.builder.master("local[2]").getOrCreate()
    >>> # mine_labels_spark(spark, "hdfs://namenode/posts", "mined/", MiningSpec(comment_clusters=5000))
    >>> MiningSpec().reaction_clusters
    128
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from hf_memotion.io_utils import atomic_write_text, check_run_folder
from hf_memotion.vise.cluster_models import ClusterModels
from hf_memotion.vise.comment_embedding import CommentEmbedding, fit_sample_rank
from hf_memotion.vise.mining_steps import (
    MINING_SIGNATURE,
    MiningSpec,
    check_post,
    corpus_description,
    fit_comment_embedding,
    fit_kmeans,
    image_reference,
    initial_centroids,
    is_holdout,
    is_labelled,
    kmeans_backend,
    label_posts,
    lloyd_sums,
    lloyd_update,
    reaction_rank,
    reaction_vector,
    sample_comments,
    size_statistics,
)

__all__ = ["list_shards", "local_spark_session", "mine_labels_on_spark", "mine_labels_spark"]

_SUFFIXES = (".jsonl", ".json", ".parquet")


def local_spark_session(cores: int = 2, memory: str = "2g"):
    """A Spark session on this machine (``local[cores]``, UI off, ``memory`` for the driver-executor JVM)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers import hf_memotion from this environment
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("hf-memotion-vise-mining")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", memory)
        .config("spark.sql.shuffle.partitions", str(max(2, cores)))
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2048")
        .getOrCreate()
    )


def list_shards(spark, corpus: str | os.PathLike) -> list[str]:
    """The shard files of a corpus (a file, or every .jsonl/.parquet file of a folder) on any Hadoop file system."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(str(corpus))
    system = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not system.exists(path):
        raise FileNotFoundError(f"no engagement data at {corpus}: pass a folder of jsonl/parquet shards or one shard")
    if system.getFileStatus(path).isFile():
        files = [str(path.toString())]
    else:
        files = sorted(
            str(status.getPath().toString())
            for status in system.listStatus(path)
            if status.isFile()
            and status.getPath().getName().endswith(_SUFFIXES)
            and not status.getPath().getName().startswith((".", "_"))
        )
    if not files:
        raise FileNotFoundError(f"{corpus} holds no .jsonl or .parquet shard")
    kinds = {"parquet" if f.endswith(".parquet") else "json" for f in files}
    if len(kinds) > 1:
        raise ValueError(f"{corpus} mixes jsonl and parquet shards: use one format")
    return files


def _local(uri: str) -> str:
    """A ``file:`` URI as a plain path (what the local engine writes); other schemes unchanged."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    return uri


def _plain(value: Any) -> Any:
    """A pandas/Arrow cell as plain Python (arrays -> lists, structs -> dicts, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _posts_schema():
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("post_id", T.StringType()),
            T.StructField("source", T.StringType()),
            T.StructField("image_path", T.StringType()),
            T.StructField("image_bytes", T.BinaryType()),
            T.StructField("comments", T.ArrayType(T.StringType())),
            T.StructField("reactions", T.MapType(T.StringType(), T.LongType())),
            T.StructField("held_out", T.BooleanType()),
            T.StructField("labelled", T.BooleanType()),
            T.StructField("error", T.StringType()),
        ]
    )


def _parse_posts(kind: str, config: MiningSpec):
    """``mapInPandas`` function: raw rows -> checked posts (the local engine's checks), held-out flag."""
    import pandas as pd

    def parse(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            out = []
            for record in frame.to_dict("records"):
                source = _local(str(record.pop("_file")).rsplit("/", 1)[0])
                if kind == "json":
                    try:
                        row: Any = json.loads(record["value"])
                    except json.JSONDecodeError as err:
                        row = err
                else:
                    row = _plain(record)
                problem = check_post(row)
                if problem is not None:
                    post_id = row.get("post_id") if isinstance(row, dict) else None
                    out.append(
                        {
                            "post_id": post_id if isinstance(post_id, str) else None,
                            "source": source,
                            "image_path": None,
                            "image_bytes": None,
                            "comments": None,
                            "reactions": None,
                            "held_out": None,
                            "labelled": None,
                            "error": problem,
                        }
                    )
                    continue
                image = image_reference(row["image"], source)  # a relative path joined to the shard's folder
                sampled = sample_comments(row.get("comments") or [], config.max_comments, row["post_id"], config.seed)
                reactions = {k: int(v) for k, v in (row.get("reactions") or {}).items() if v is not None}
                out.append(
                    {
                        "post_id": row["post_id"],
                        "source": source,
                        "image_path": image["path"],
                        "image_bytes": image["bytes"],
                        "comments": sampled,
                        "reactions": reactions if row.get("reactions") is not None else None,
                        "held_out": is_holdout(row["post_id"], config.holdout_fraction, config.seed),
                        "labelled": is_labelled(row["post_id"], config),
                        "error": None,
                    }
                )
            yield pd.DataFrame(out, columns=[f.name for f in _posts_schema().fields])

    return parse


def _read_posts(spark, files: list[str], config: MiningSpec):
    from pyspark.sql import functions as F

    kind = "parquet" if files[0].endswith(".parquet") else "json"
    raw = spark.read.parquet(*files) if kind == "parquet" else spark.read.text(files)
    raw = raw.withColumn("_file", F.col("_metadata.file_path"))
    return raw.mapInPandas(_parse_posts(kind, config), _posts_schema())


def _ranked_comments(config: MiningSpec):
    """``mapInPandas``: held-out posts -> (rank, text) of every sampled comment."""
    import pandas as pd

    def explode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            ranks, texts = [], []
            for post_id, comments in zip(frame["post_id"], frame["comments"], strict=True):
                for position, text in enumerate(_plain(comments) or []):
                    ranks.append(fit_sample_rank(config.seed, post_id, position))
                    texts.append(text)
            yield pd.DataFrame({"rank": ranks, "text": texts})

    return explode


def _embed(broadcast):
    """``mapInPandas``: (rank, text) -> (rank, phi_C vector) of the comments with signal."""
    import pandas as pd

    def embed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        embedding = broadcast.value
        for frame in batches:
            vectors = embedding.transform(list(frame["text"]))
            keep = CommentEmbedding.has_signal(vectors)
            yield pd.DataFrame({"rank": frame["rank"][keep].to_numpy(), "vector": list(vectors[keep])})

    return embed


def _blocks(rows, size: int = 4096):
    """Rows of vectors -> float32 blocks (what each Lloyd iteration reads from Spark's cache)."""
    block = []
    for row in rows:
        block.append(row[0])
        if len(block) == size:
            yield np.asarray(block, dtype=np.float32)
            block = []
    if block:
        yield np.asarray(block, dtype=np.float32)


def _distributed_kmeans(spark, vectors, k: int, config: MiningSpec) -> np.ndarray:
    """The local engine's K-means on Spark: same initial centroids, ``kmeans_iterations`` distributed Lloyd steps."""
    total = vectors.count()
    limit = min(total, max(2 * k, 1024))
    while True:  # the first k distinct vectors in rank order (more rows only when duplicates ate the prefix)
        prefix = vectors.orderBy("rank").limit(limit).select("vector").collect()
        centroids = initial_centroids(np.asarray([r[0] for r in prefix], dtype=np.float32), k)
        if len(centroids) == k or limit >= total:
            break
        limit = min(total, limit * 4)
    if len(centroids) < 2:
        return centroids
    blocks = vectors.select("vector").rdd.mapPartitions(_blocks).cache()
    try:
        for _ in range(config.kmeans_iterations):
            shared = spark.sparkContext.broadcast(centroids)
            sums, counts = blocks.map(lambda block, c=shared: lloyd_sums(block, c.value)).treeReduce(
                lambda a, b: (a[0] + b[0], a[1] + b[1])
            )
            centroids = lloyd_update(centroids, sums, counts)
            shared.unpersist()
    finally:
        blocks.unpersist()
    return centroids


def _label_schema():
    from pyspark.sql import types as T

    image = T.StructType([T.StructField("bytes", T.BinaryType()), T.StructField("path", T.StringType())])
    return T.StructType(
        [
            T.StructField("post_id", T.StringType()),
            T.StructField("image", image),
            T.StructField("comment_clusters", T.ArrayType(T.IntegerType())),
            T.StructField("comment_weights", T.ArrayType(T.FloatType())),
            T.StructField("reaction_cluster", T.IntegerType()),
            T.StructField("_comments_without_signal", T.IntegerType()),
            T.StructField("_no_comment_signal", T.BooleanType()),
            T.StructField("_extra_keys", T.ArrayType(T.StringType())),
        ]
    )


def _label(broadcast, config: MiningSpec):
    """``mapInPandas``: posts -> label rows, with :func:`label_posts` (the local engine's step 2)."""
    import pandas as pd

    def label(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        models = broadcast.value
        for frame in batches:
            posts = [
                {
                    "post_id": r["post_id"],
                    "comments": _plain(r["comments"]) or [],
                    "reactions": _plain(r["reactions"]),
                    "image": {"bytes": r["image_bytes"], "path": r["image_path"]},
                }
                for r in frame.to_dict("records")
            ]
            rows, details = label_posts(posts, models, config)
            yield pd.DataFrame(
                [
                    {
                        **row,
                        "_comments_without_signal": d["comments_without_signal"],
                        "_no_comment_signal": d["no_comment_signal"],
                        "_extra_keys": d["extra_reaction_keys"],
                    }
                    for row, d in zip(rows, details, strict=True)
                ],
                columns=[f.name for f in _label_schema().fields],
            )

    return label


def mine_labels_spark(
    spark: Any, corpus: str | os.PathLike, output_dir: str | os.PathLike, config: MiningSpec | None = None
) -> dict[str, Any]:
    """Run both mining steps with Spark and write the label shards, ``clusters/`` and ``mining.json``.

    Args:
        spark: The session (``local_spark_session()`` or the cluster's).
        corpus: A shard or a folder of shards: a local path or any URI Spark reads (``hdfs://``, ``s3a://``...).
        output_dir: A folder the driver writes (local or a shared mount).
        config: Mining settings (default: the paper's).

    Returns:
        The report (as :func:`~hf_memotion.vise.mining.mine_labels`': counts, cluster-size statistics).
    """
    from pyspark.sql import functions as F

    config = config or MiningSpec()
    files = list_shards(spark, corpus)
    output = Path(output_dir)
    check_run_folder(output, MINING_SIGNATURE, "a mining run")
    output.mkdir(parents=True, exist_ok=True)
    posts = _read_posts(spark, files, config).cache()
    valid = posts.filter(F.col("error").isNull())
    held = valid.filter("held_out")
    # step 1: phi_C on the fitting sample, fitted once on the driver, applied in the executors
    comments = held.select("post_id", "comments").mapInPandas(_ranked_comments(config), "rank double, text string")
    held_comments = comments.count()
    sample = [r["text"] for r in comments.orderBy("rank").limit(config.fit_sample).collect()]
    reactions = sorted(
        (reaction_rank(config.seed, r["post_id"]), vector)
        for r in held.select("post_id", "reactions").collect()
        if (vector := reaction_vector(r["reactions"] or {})) is not None
    )
    if held_comments < 2 or len(reactions) < 2:
        raise ValueError(
            f"the held-out subset has {held_comments} comments and {len(reactions)} posts with "
            "reactions; raise holdout_fraction or add data"
        )
    embedding = fit_comment_embedding(sample, config)
    if embedding is None:
        raise ValueError(
            "engine=spark computes phi_C with the TF-IDF embedding; a comment_encoder runs on one "
            "machine (engine=local)"
        )
    shared = spark.sparkContext.broadcast(embedding)
    vectors = comments.mapInPandas(_embed(shared), "rank double, vector array<float>").cache()
    with_signal = vectors.count()
    if with_signal < 2:
        raise ValueError(f"only {with_signal} held-out comments hold a known word or emoji; add data")
    comment_centroids = _distributed_kmeans(spark, vectors, config.comment_clusters, config)
    vectors.unpersist()
    backend = kmeans_backend(config.kmeans_backend)
    reaction_centroids = fit_kmeans(np.stack([v for _, v in reactions]), config.reaction_clusters, config, backend)
    settings = {
        **asdict(config),
        "kmeans_backend_used": f"spark lloyd (comments), {backend} (reactions)",
        "comment_clusters_fitted": len(comment_centroids),
        "reaction_clusters_fitted": len(reaction_centroids),
        "embedding_dim_fitted": embedding.dim,
        "key": config.key(),
    }
    models = ClusterModels(embedding, comment_centroids, reaction_centroids, settings)
    # step 2: every other valid post, in the executors
    shared_models = spark.sparkContext.broadcast(models)
    labels = (
        valid.filter(F.col("labelled"))  # not held out, and in the label_fraction sample
        .mapInPandas(_label(shared_models, config), _label_schema())
        .orderBy("post_id")
        .cache()
    )
    staging = Path(tempfile.mkdtemp(prefix=".spark_labels.", dir=output))
    try:
        labels.drop("_comments_without_signal", "_no_comment_signal", "_extra_keys").write.mode("overwrite").parquet(
            str(staging / "labels")
        )
        models.save(staging / "clusters")
        for old in [*output.glob("labels-part-*.parquet"), output / "clusters", output / "clusters_spark"]:
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        for index, part in enumerate(sorted((staging / "labels").glob("part-*.parquet"))):
            os.replace(part, output / f"labels-part-{index:05d}.parquet")
        os.replace(staging / "clusters", output / "clusters")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    holdout = {
        "holdout_posts": held.count(),
        "holdout_comments": held_comments,
        "holdout_comments_without_signal": held_comments - with_signal,
        "holdout_reactions": len(reactions),
    }
    report = {
        "corpus": corpus_description(corpus) if "://" not in str(corpus) else {"path": str(corpus), "demo": False},
        **_spark_report(labels, posts, models, holdout, settings),
    }
    atomic_write_text(output / "mining.json", json.dumps(report, indent=2))
    labels.unpersist()
    posts.unpersist()
    shared.unpersist()
    shared_models.unpersist()
    return report


def _spark_report(labels, posts, models: ClusterModels, holdout: dict, settings: dict) -> dict[str, Any]:
    from pyspark.sql import functions as F

    comment_sizes = np.zeros(len(models.comment_centroids))
    for row in labels.select(F.explode("comment_clusters").alias("c")).groupBy("c").count().collect():
        comment_sizes[row["c"]] = row["count"]
    reaction_sizes = np.zeros(len(models.reaction_centroids))
    for row in labels.filter("reaction_cluster >= 0").groupBy("reaction_cluster").count().collect():
        reaction_sizes[row["reaction_cluster"]] = row["count"]
    summary = labels.agg(
        F.count("*").alias("posts"),
        F.sum(F.when(F.size("comment_clusters") == 0, 1).otherwise(0)).alias("no_comments"),
        F.sum(F.when(F.col("reaction_cluster") < 0, 1).otherwise(0)).alias("no_reactions"),
        F.sum("_comments_without_signal").alias("without_signal"),
        F.sum(F.col("_no_comment_signal").cast("int")).alias("no_signal_posts"),
    ).first()
    extra = {
        r["key"]: int(r["count"])
        for r in labels.select(F.explode("_extra_keys").alias("key")).groupBy("key").count().collect()
    }
    errors = posts.filter(F.col("error").isNotNull())
    malformed = [
        {"shard": r["source"], "post_id": r["post_id"], "error": r["error"]} for r in errors.limit(20).collect()
    ]
    details = {
        "comments_without_signal": int(summary["without_signal"] or 0),
        "posts_without_comment_signal": int(summary["no_signal_posts"] or 0),
        "extra_reaction_keys": extra,
    }  # the local engine's counts (summarize_details), by the same names
    return {
        "engine": "spark",
        "settings": settings,
        "holdout": holdout,
        "posts_labelled": int(summary["posts"]),
        "posts_without_comments": int(summary["no_comments"] or 0),
        **details,
        "posts_without_reactions": int(summary["no_reactions"] or 0),
        "malformed_rows": errors.count(),
        "malformed_examples": malformed,
        "comment_cluster_sizes": size_statistics(comment_sizes),
        "reaction_cluster_sizes": size_statistics(reaction_sizes),
    }


def mine_labels_on_spark(
    corpus: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: MiningSpec,
    *,
    cores: int = 2,
    memory: str = "2g",
) -> dict[str, Any]:
    """:func:`mine_labels_spark` in the active Spark session (under ``spark-submit``), else a local one of ``cores``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise RuntimeError("engine=spark needs pyspark: pip install 'hf-memotion[spark]'") from None
    active = SparkSession.getActiveSession()  # under spark-submit the cluster's session is already there
    spark = active or local_spark_session(cores=cores, memory=memory)
    spark.sparkContext.setLogLevel("ERROR")
    try:
        return mine_labels_spark(spark, corpus, output_dir, config)
    finally:
        if active is None:
            spark.stop()
