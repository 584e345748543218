"""The two VisE mining steps as an Apache Spark job (MLlib features and K-means), for corpora beyond one machine.

Same inputs (jsonl or parquet engagement shards), same held-out rule and comment sampling (the
functions of :mod:`hf_memotion.vise.mining`, run as UDFs), same label schema
(:func:`~hf_memotion.vise.mining.label_features`): ``labels-part-XXXXX.parquet`` files that
:func:`datasets.load_dataset` streams for pretraining. What differs is phi_C: MLlib has no sparse
truncated SVD, so a comment is its L2-normalised TF-IDF vector (``CountVectorizer`` + ``IDF``),
clustered by ``KMeans`` with cosine distance; reactions are L2-normalised 5-vectors clustered by
Euclidean ``KMeans``. The fitted models are saved in MLlib's own format (JSON metadata and parquet
data, no pickle) under ``clusters_spark/``.

Fault tolerance is Spark's (failed tasks are retried); the output is written to a temporary folder
and moved into place, so a failed job leaves no partial labels. See ``docs/vise_spark.md`` for a
cluster run.

Example:
    >>> # spark = SparkSession.builder.master("local[2]").getOrCreate()
    >>> # mine_labels_spark(spark, "posts/", "mined/", MiningConfig(comment_clusters=5000))
    >>> MiningConfig().reaction_clusters
    128
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hf_memotion.data.engagement import REACTIONS, engagement_shards
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.vise.mining import MiningConfig, corpus_description, is_holdout, sample_comments

__all__ = ["local_spark_session", "mine_labels_on_spark", "mine_labels_spark"]

#: sklearn's default token pattern, so both engines split words alike.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"


def local_spark_session(cores: int = 2, memory: str = "2g"):
    """A Spark session on this machine (``local[cores]``, UI off), for tests and single-machine runs."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers import hf_memotion from this environment
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("hf-memotion-vise-mining")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", memory)
        .config("spark.sql.shuffle.partitions", str(max(2, cores)))
        .getOrCreate()
    )


def _read(spark, shards: list[Path]):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("post_id", T.StringType()),
            T.StructField("image", T.StringType()),
            T.StructField("comments", T.ArrayType(T.StringType())),
            T.StructField("reactions", T.StructType([T.StructField(r, T.LongType()) for r in REACTIONS])),
            T.StructField("_corrupt_record", T.StringType()),
        ]
    )
    paths = [str(s) for s in shards]
    if shards[0].suffix == ".parquet":
        frame = spark.read.parquet(*paths)
        frame = frame.withColumn("image", F.coalesce(F.col("image.path"), F.lit(None))).withColumn(
            "_corrupt_record", F.lit(None).cast("string")
        )
    else:
        frame = spark.read.schema(schema).option("mode", "PERMISSIVE").json(paths)
        base = str(shards[0].parent)
        frame = frame.withColumn(
            "image",
            F.when(F.col("image").startswith("/"), F.col("image")).otherwise(F.concat(F.lit(base + "/"), "image")),
        )
    return frame.cache()


def mine_labels_spark(
    spark, corpus: str | os.PathLike, output_dir: str | os.PathLike, config: MiningConfig | None = None
):
    """Run both mining steps with Spark and write the label shards, the models and ``mining.json``.

    Returns:
        The report (as in :func:`~hf_memotion.vise.mining.mine_labels`: counts, cluster-size statistics).
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import IDF, CountVectorizer, Normalizer, RegexTokenizer, VectorAssembler
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    config = config or MiningConfig()
    shards = engagement_shards(corpus)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    raw = _read(spark, shards)
    valid = (
        F.col("_corrupt_record").isNull()
        & F.col("post_id").isNotNull()
        & (F.length("post_id") > 0)
        & F.col("image").isNotNull()
        & F.coalesce(F.forall(F.array(*[F.col(f"reactions.{r}") for r in REACTIONS]), lambda v: v.isNull() | (v >= 0)),
                     F.lit(True))
    )  # fmt: skip
    errors = raw.filter(~valid).select("post_id", "_corrupt_record").collect()
    fraction, seed, cap = config.holdout_fraction, config.seed, config.max_comments
    holdout = F.udf(lambda pid: is_holdout(pid, fraction, seed), T.BooleanType())
    sample = F.udf(lambda comments, pid: sample_comments(comments or [], cap, pid, seed), T.ArrayType(T.StringType()))
    counts = F.array(*[F.coalesce(F.col(f"reactions.{r}"), F.lit(0)).cast("double") for r in REACTIONS])
    posts = (
        raw.filter(valid)
        .withColumn("held_out", holdout("post_id"))
        .withColumn("sampled", sample("comments", "post_id"))
        .withColumn("counts", counts)
        .withColumn("has_reactions", F.aggregate("counts", F.lit(0.0), lambda a, v: a + v) > 0)
        .cache()
    )
    held = posts.filter("held_out")
    comments = held.select(F.explode("sampled").alias("text"))
    n_comments = comments.count()
    # step 1: comments
    featurize = Pipeline(
        stages=[
            RegexTokenizer(inputCol="text", outputCol="words", pattern=TOKEN_PATTERN, gaps=False, toLowercase=True),
            CountVectorizer(inputCol="words", outputCol="tf", vocabSize=config.max_features),
            IDF(inputCol="tf", outputCol="tfidf"),
            Normalizer(inputCol="tfidf", outputCol="features", p=2.0),
        ]
    ).fit(comments)
    embedded = featurize.transform(comments).select("features").cache()
    k_comments = max(2, min(config.comment_clusters, embedded.distinct().count()))
    comment_kmeans = KMeans(k=k_comments, seed=seed, distanceMeasure="cosine", featuresCol="features").fit(embedded)
    # step 1: reactions
    to_vector = VectorAssembler(inputCols=[f"c{i}" for i in range(len(REACTIONS))], outputCol="raw_counts")

    def reaction_features(frame):
        expanded = frame.select("*", *[F.col("counts")[i].alias(f"c{i}") for i in range(len(REACTIONS))])
        return Normalizer(inputCol="raw_counts", outputCol="features", p=2.0).transform(to_vector.transform(expanded))

    held_reactions = reaction_features(held.filter("has_reactions")).select("features").cache()
    k_reactions = max(2, min(config.reaction_clusters, held_reactions.distinct().count()))
    reaction_kmeans = KMeans(k=k_reactions, seed=seed, featuresCol="features").fit(held_reactions)
    # step 2: every other post
    rest = posts.filter(~F.col("held_out"))
    assigned = (
        comment_kmeans.transform(featurize.transform(rest.select("post_id", F.explode("sampled").alias("text"))))
        .groupBy("post_id", "prediction")
        .count()
    )
    per_post = assigned.groupBy("post_id").agg(
        F.array_sort(F.collect_list(F.struct(F.col("prediction").alias("cluster"), F.col("count").alias("n")))).alias(
            "pairs"
        )
    )
    total = F.aggregate("pairs", F.lit(0).cast("long"), lambda a, p: a + p["n"])
    per_post = per_post.select(
        "post_id",
        F.transform("pairs", lambda p: p["cluster"].cast("int")).alias("comment_clusters"),
        F.transform("pairs", lambda p: (p["n"] / total).cast("float")).alias("comment_weights"),
    )
    reactions = reaction_kmeans.transform(reaction_features(rest.filter("has_reactions"))).select(
        "post_id", F.col("prediction").cast("int").alias("reaction_cluster")
    )
    labels = (
        rest.select(
            "post_id", F.struct(F.lit(None).cast("binary").alias("bytes"), F.col("image").alias("path")).alias("image")
        )
        .join(per_post, "post_id", "left")
        .join(reactions, "post_id", "left")
        .select(
            "post_id",
            "image",
            F.coalesce("comment_clusters", F.array().cast("array<int>")).alias("comment_clusters"),
            F.coalesce("comment_weights", F.array().cast("array<float>")).alias("comment_weights"),
            F.coalesce("reaction_cluster", F.lit(-1)).cast("int").alias("reaction_cluster"),
        )
        .orderBy("post_id")
    )
    staging = Path(tempfile.mkdtemp(prefix=".spark_labels.", dir=output))
    try:
        labels.write.mode("overwrite").parquet(str(staging / "labels"))
        models = staging / "clusters_spark"
        featurize.write().overwrite().save(str(models / "comment_features"))
        comment_kmeans.write().overwrite().save(str(models / "comment_kmeans"))
        reaction_kmeans.write().overwrite().save(str(models / "reaction_kmeans"))
        for old in [*output.glob("labels-part-*.parquet"), output / "clusters_spark"]:
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        for index, part in enumerate(sorted((staging / "labels").glob("part-*.parquet"))):
            os.replace(part, output / f"labels-part-{index:05d}.parquet")
        os.replace(models, output / "clusters_spark")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report = {"corpus": corpus_description(corpus),
              **_spark_report(labels, k_comments, k_reactions, held, n_comments, errors, config)}  # fmt: skip
    atomic_write_text(output / "mining.json", json.dumps(report, indent=2))
    return report


def _spark_report(labels, k_comments, k_reactions, held, n_comments, errors, config) -> dict[str, Any]:
    import numpy as np
    from pyspark.sql import functions as F

    from hf_memotion.vise.mining import _size_statistics

    comment_sizes = np.zeros(k_comments)
    for row in labels.select(F.explode("comment_clusters").alias("c")).groupBy("c").count().collect():
        comment_sizes[row["c"]] = row["count"]
    reaction_sizes = np.zeros(k_reactions)
    for row in labels.filter("reaction_cluster >= 0").groupBy("reaction_cluster").count().collect():
        reaction_sizes[row["reaction_cluster"]] = row["count"]
    summary = labels.agg(
        F.count("*").alias("posts"),
        F.sum(F.when(F.size("comment_clusters") == 0, 1).otherwise(0)).alias("no_comments"),
        F.sum(F.when(F.col("reaction_cluster") < 0, 1).otherwise(0)).alias("no_reactions"),
    ).first()
    malformed = [{"post_id": e["post_id"], "error": "malformed row", "record": (e["_corrupt_record"] or "")[:200]}
                 for e in errors]  # fmt: skip
    return {
        "engine": "spark",
        "settings": {
            **asdict(config),
            "comment_clusters_fitted": k_comments,
            "reaction_clusters_fitted": k_reactions,
            "key": config.key(),
        },
        "holdout": {"holdout_posts": held.count(), "holdout_comments": n_comments},
        "posts_labelled": int(summary["posts"]),
        "posts_without_comments": int(summary["no_comments"] or 0),
        "posts_without_reactions": int(summary["no_reactions"] or 0),
        "malformed_rows": len(malformed),
        "malformed_examples": malformed[:20],
        "comment_cluster_sizes": _size_statistics(comment_sizes),
        "reaction_cluster_sizes": _size_statistics(reaction_sizes),
    }


def mine_labels_on_spark(
    corpus: str | os.PathLike, output_dir: str | os.PathLike, config: MiningConfig, *, cores: int = 2
) -> dict[str, Any]:
    """:func:`mine_labels_spark` in the active Spark session (under ``spark-submit``), else a local one of ``cores``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise RuntimeError("engine=spark needs pyspark: pip install 'hf-memotion[spark]'") from None
    active = SparkSession.getActiveSession()  # under spark-submit the cluster's session is already there
    spark = active or local_spark_session(cores=cores)
    spark.sparkContext.setLogLevel("ERROR")
    try:
        return mine_labels_spark(spark, corpus, output_dir, config)
    finally:
        if active is None:
            spark.stop()
