#!/usr/bin/env python
"""Mine VisE pseudo-labels (comment and reaction clusters) from an engagement corpus, resumably by shard.

Usage:
    python scripts/mine_vise_labels.py [configs/vise_mining_demo.yaml] [key=value ...]
    python scripts/mine_vise_labels.py configs/vise_mining_demo.yaml data.path=/data/posts num_proc=8
    python scripts/mine_vise_labels.py engine=spark            # the same two steps as a Spark job (local[num_proc])
    spark-submit scripts/mine_vise_labels.py engine=spark data.path=hdfs:///posts   # a cluster: docs/vise_spark.md
"""

from __future__ import annotations

import sys

from hf_memotion.cli import USER_ERRORS, parse_config_arguments
from hf_memotion.config import load_run_config
from hf_memotion.training.runs import check_keys
from hf_memotion.vise import MiningConfig, mine_labels
from hf_memotion.vise.engagement import resolve_corpus


def _sizes(stats: dict) -> str:
    return (f"{stats['non_empty']}/{stats['clusters']} used, size min {stats['min']} median {stats['median']:g} "
            f"max {stats['max']}, largest share {stats['largest_share']:.1%}, "
            f"effective clusters {stats['effective_clusters']:.1f}")  # fmt: skip


def _run_spark(corpus, output, settings: MiningConfig, cores: int) -> dict:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise RuntimeError("engine=spark needs pyspark: pip install 'hf-memotion[spark]'") from None
    from hf_memotion.vise.spark_mining import local_spark_session, mine_labels_spark

    active = SparkSession.getActiveSession()  # under spark-submit the cluster's session is already there
    spark = active or local_spark_session(cores=cores)
    spark.sparkContext.setLogLevel("ERROR")
    try:
        return mine_labels_spark(spark, corpus, output, settings)
    finally:
        if active is None:
            spark.stop()


def main(argv: list[str] | None = None) -> int:
    path, overrides = parse_config_arguments(argv, __doc__.splitlines()[0], "configs/vise_mining_demo.yaml",
                                             "mining.comment_clusters=5000")  # fmt: skip
    try:
        config = load_run_config(path, overrides)
        check_keys(config, {"data", "output_dir", "num_proc", "mining", "engine"})
        engine = config.get("engine", "local")
        if engine not in ("local", "spark"):
            raise ValueError(f"engine must be 'local' (this machine) or 'spark', got {engine!r}")
        corpus = resolve_corpus(config.get("data"))
        settings = MiningConfig(**(config.get("mining") or {}))
        output = config.get("output_dir", "outputs/vise_mined")
        if engine == "spark":
            report = _run_spark(corpus, output, settings, int(config.get("num_proc", 2)))
        else:
            report = mine_labels(corpus, output, settings, num_proc=int(config.get("num_proc", 1)))
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    print(f"labelled {report['posts_labelled']} posts ({report['holdout']['holdout_posts']} held out for clustering); "
          f"{report['posts_without_comments']} without comments, {report['posts_without_reactions']} without "
          f"reactions, {report['malformed_rows']} malformed rows skipped")  # fmt: skip
    print("comment clusters: " + _sizes(report["comment_cluster_sizes"]))
    print("reaction clusters: " + _sizes(report["reaction_cluster_sizes"]))
    print(f"labels: {config.get('output_dir')}/labels-*.parquet  report: {config.get('output_dir')}/mining.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
