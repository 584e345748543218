"""VisE pseudo-label mining: schema, determinism, non-degenerate clusters, documented edge cases, resume."""

import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from hf_memotion.data.engagement import load_engagement, make_demo_engagement
from hf_memotion.vise import MiningSpec, mine_labels
from hf_memotion.vise.commands import plan_mining
from hf_memotion.vise.mining import ClusterModels, _label_shard, is_holdout, sample_comments
from hf_memotion.vise.specs import MiningRunSpec

ROOT = Path(__file__).resolve().parents[1]
SMALL = MiningSpec(comment_clusters=24, reaction_clusters=8, holdout_fraction=0.25, embedding_dim=32, seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_demo_engagement(tmp_path_factory.mktemp("vise") / "posts", n_posts=600, n_shards=3, seed=1)


def _labels(folder):
    return datasets.load_dataset(
        "parquet", data_files=sorted(str(p) for p in folder.glob("labels-*.parquet")), split="train"
    ).to_dict()


def test_the_demo_corpus_streams_with_the_schema(corpus):
    posts = load_engagement(corpus)
    assert isinstance(posts, datasets.IterableDataset)
    first = next(iter(posts))
    assert first["post_id"] == "p0000000" and Path(first["image"]["path"]).is_file()
    assert set(first["reactions"]) == {"haha", "sorry", "angry", "wow", "love"}
    again = make_demo_engagement(corpus, n_posts=600, n_shards=3, seed=1)  # same settings: reused
    assert again == corpus
    with pytest.raises(FileExistsError):
        make_demo_engagement(corpus.parent, n_posts=10)


def test_the_demo_corpus_is_the_same_on_every_run(tmp_path):
    """What the VisE guide says: the demo corpus is deterministic (two folders, the same bytes)."""
    one = make_demo_engagement(tmp_path / "one", n_posts=40, n_shards=2, seed=5, image_size=16)
    two = make_demo_engagement(tmp_path / "two", n_posts=40, n_shards=2, seed=5, image_size=16)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


def test_two_runs_with_the_same_seed_give_identical_non_degenerate_labels(corpus, tmp_path):
    one = mine_labels(corpus, tmp_path / "one", SMALL, num_proc=2)
    two = mine_labels(corpus, tmp_path / "two", SMALL, num_proc=1)
    assert _labels(tmp_path / "one") == _labels(tmp_path / "two")
    for report in (one, two):
        assert report["comment_cluster_sizes"]["non_empty"] >= 20  # most of the 24 clusters are used
        assert report["comment_cluster_sizes"]["largest_share"] < 0.2
        assert report["reaction_cluster_sizes"]["non_empty"] >= 6
    labels = _labels(tmp_path / "one")
    assert not set(labels["post_id"]) & {
        p for p in labels["post_id"] if is_holdout(p, 0.25, 3)
    }  # held out: not labelled
    assert one["posts_labelled"] + one["holdout"]["holdout_posts"] == 600
    weights = [sum(w) for w in labels["comment_weights"] if w]
    assert np.allclose(weights, 1.0, atol=1e-5)  # soft multi-label targets are normalised counts
    # the documented cases: no comments -> empty target, no reactions -> reaction_cluster -1
    assert one["posts_without_comments"] == sum(1 for ids in labels["comment_clusters"] if not ids) > 0
    assert one["posts_without_reactions"] == labels["reaction_cluster"].count(-1) > 0
    models = ClusterModels.load(tmp_path / "one" / "clusters")
    assert models.comment_centroids.shape == (24, 32) and models.reaction_centroids.shape == (8, 5)


def test_comment_clusters_follow_what_the_image_shows(corpus, tmp_path):
    mine_labels(corpus, tmp_path / "mined", SMALL)
    models = ClusterModels.load(tmp_path / "mined" / "clusters")
    fire = models.assign_comments(["fire hot burning danger", "so scary wow fire", "hot hot fire", "danger burning"])
    sea = models.assign_comments(["calm blue sea peace", "beautiful sea love", "sea calm", "peace blue love"])
    assert not set(fire) & set(sea)  # comments about different images land in different clusters


def test_malformed_rows_are_reported_with_their_ids_and_skipped(corpus, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    good = (corpus / "posts-00000.jsonl").read_text().splitlines()
    bad = [
        '{"post_id": "x1", "image": "img.png", "comments": "not a list", "reactions": {}}',
        '{"post_id": "x2", "image": "img.png", "comments": [], "reactions": {"haha": -3}}',
        "this is not json",
    ]
    lines = good
    (broken / "images").symlink_to(corpus / "images")  # relative names, as a corpus holds them
    (broken / "posts-00000.jsonl").write_text("\n".join(lines[:100] + bad + lines[100:]) + "\n")
    report = mine_labels(broken, tmp_path / "out", SMALL)
    assert report["malformed_rows"] == 3
    assert {e["post_id"] for e in report["malformed_examples"]} == {"x1", "x2", None}
    assert {e["row"] for e in report["malformed_examples"]} == {101, 102, 103}
    assert report["posts_labelled"] + report["holdout"]["holdout_posts"] == len(good)


def test_a_restarted_run_does_not_redo_finished_shards(corpus, tmp_path, monkeypatch):
    import hf_memotion.vise.mining as mining

    out = tmp_path / "run"
    first = mine_labels(corpus, out, SMALL)
    assert len(first["shards_labelled_this_run"]) == 3
    (out / "labels-posts-00001.parquet").unlink()  # as if killed while labelling the second shard
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("labels-*.parquet")}
    calls = []
    monkeypatch.setattr(mining, "_label_shard", lambda *a: calls.append(Path(a[0]).name) or _label_shard(*a))
    again = mine_labels(corpus, out, SMALL)
    assert calls == ["posts-00001.jsonl"] and again["shards_labelled_this_run"] == ["posts-00001.jsonl"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("labels-*.parquet") if p.name in before} == before
    assert again["posts_labelled"] == first["posts_labelled"]
    changed = mine_labels(corpus, out, MiningSpec(**{**SMALL.__dict__, "reaction_clusters": 6}))
    assert len(changed["shards_labelled_this_run"]) == 3  # other settings: new clusters, every shard again


def test_comment_sampling_is_capped_and_deterministic():
    comments = [f"comment {i}" for i in range(250)]
    a = sample_comments(comments, 100, "p1", seed=0)
    assert len(a) == 100 and a == sample_comments(comments, 100, "p1", seed=0)
    assert a != sample_comments(comments, 100, "p2", seed=0)
    assert sample_comments(["", "  ", "ok"], 100, "p1", seed=0) == ["ok"]


def test_the_script_mines_the_demo_corpus(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "mine_vise_labels.py"),
            f"data.demo.output_dir={tmp_path / 'posts'}",
            "data.demo.n_posts=400",
            "data.demo.n_shards=2",
            f"output_dir={tmp_path / 'mined'}",
            "num_proc=1",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "comment clusters: " in result.stdout and "reaction clusters: " in result.stdout
    report = json.loads((tmp_path / "mined" / "mining.json").read_text())
    assert report["comment_cluster_sizes"]["non_empty"] > 1
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mine_vise_labels.py"), "data.path=/nonexistent", "data.demo=null"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "error:" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_the_spark_job_writes_the_local_engines_labels_deterministically(corpus, tmp_path):
    pytest.importorskip("pyspark")
    from hf_memotion.vise.mining import label_features
    from hf_memotion.vise.spark_mining import local_spark_session, mine_labels_spark

    spark = local_spark_session()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        one = mine_labels_spark(spark, corpus, tmp_path / "one", SMALL)
        mine_labels_spark(spark, corpus, tmp_path / "two", SMALL)
    finally:
        spark.stop()
    local = mine_labels(corpus, tmp_path / "local", SMALL)
    spark_labels = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "one" / "labels-part-*.parquet"), split="train", features=label_features()
    )
    assert spark_labels.features == label_features()
    assert spark_labels.to_dict() == _labels(tmp_path / "two")  # same seed, same labels
    local_labels = _labels(tmp_path / "local")
    order = np.argsort(local_labels["post_id"])
    # the same phi_C, initial centroids and Lloyd iterations: the same labels (the demo's clusters are well apart)
    for key in ("post_id", "comment_clusters", "reaction_cluster"):
        assert [local_labels[key][i] for i in order] == spark_labels[key], key
    for key in ("posts_without_comments", "posts_without_reactions", "comments_without_signal", "malformed_rows"):
        assert one[key] == local[key], key
    assert one["comment_cluster_sizes"]["non_empty"] >= 20 and one["reaction_cluster_sizes"]["non_empty"] >= 6
    assert ClusterModels.load(tmp_path / "one" / "clusters").comment_centroids.shape == (24, 32)


@pytest.mark.slow
def test_the_mining_benchmark_prints_its_tables(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_mining.py"),
            "--comments",
            "4000",
            "--spark-comments",
            "0",
            "--spark-k5000-comments",
            "0",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    (row,) = report["sizes"]
    assert row["comments"] == 4000 and row["step2_posts_per_s_per_core"] > row["baseline_posts_per_s_per_core"] > 0
    assert row["peak_rss_mb"] > 0 and row["step2_posts_per_s_2_processes"] > 0
    assert "| comments | posts | vocabulary |" in result.stdout


def test_a_transformers_sentence_encoder_can_replace_tfidf(corpus, tmp_path):
    from transformers import AutoModel

    from hf_memotion.models.text.tiny import build_tiny_text_backbone

    words = "fire hot burning danger scary wow sea calm blue beautiful peace love forest green hike fresh nature"
    config, tokenizer = build_tiny_text_backbone(
        "bert", [words + " sun lol funny haha rain sad party night"], hidden_size=16, num_layers=1
    )
    encoder = tmp_path / "encoder"
    AutoModel.from_config(config).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    settings = MiningSpec(**{**SMALL.__dict__, "comment_encoder": str(encoder), "comment_clusters": 8})
    report = mine_labels(corpus, tmp_path / "mined", settings)
    models = ClusterModels.load(tmp_path / "mined" / "clusters")
    assert models.settings["comment_encoder"] == str(encoder) and models.comment_centroids.shape == (8, 16)
    assert report["comment_cluster_sizes"]["non_empty"] >= 2 and report["posts_labelled"] > 0


@pytest.mark.slow
def test_a_killed_mining_run_resumes_without_redoing_finished_shards(tmp_path):
    import os
    import signal
    import time

    import pyarrow.parquet

    script = str(ROOT / "scripts" / "mine_vise_labels.py")
    posts = [
        "data.demo.n_posts=6000",
        "data.demo.n_shards=6",
        f"data.demo.output_dir={tmp_path / 'posts'}",
        "num_proc=1",
        "mining.comment_clusters=32",
        "mining.reaction_clusters=8",
        "mining.embedding_dim=32",
    ]
    straight = subprocess.run(
        [sys.executable, script, *posts, f"output_dir={tmp_path / 'straight'}"], capture_output=True, text=True
    )
    assert straight.returncode == 0, straight.stderr[-2000:]
    run = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, script, *posts, f"output_dir={run}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not (run / "labels-posts-00001.done.json").exists():
        assert process.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # a shard counts as finished once its completion record is written; one renamed into place just before the
    # kill but not yet recorded is labelled again, as it must be
    finished = {
        p.name: p.stat().st_mtime_ns for p in run.glob("labels-*.parquet") if p.with_suffix(".done.json").is_file()
    }
    assert 2 <= len(finished) < 6  # killed midway
    for name in finished:  # no half-written shard: a write in flight at the kill is a hidden temporary file
        pyarrow.parquet.read_table(run / name)
    again = subprocess.run([sys.executable, script, *posts, f"output_dir={run}"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not list(run.glob(".*.tmp"))  # what the kill left in flight is cleared by the resumed run
    assert {n: (run / n).stat().st_mtime_ns for n in finished} == finished  # finished shards were not redone
    report = json.loads((run / "mining.json").read_text())
    assert len(report["shards_labelled_this_run"]) == 6 - len(finished)
    assert _labels(run) == _labels(tmp_path / "straight")


def test_damaged_shards_are_relabelled_and_damaged_clusters_refit(corpus, tmp_path, caplog):
    from hf_memotion.vise.mining import MiningArtifactError

    out = tmp_path / "run"
    first = mine_labels(corpus, out, SMALL)
    truncated = out / "labels-posts-00000.parquet"
    truncated.write_bytes(truncated.read_bytes()[:100])  # cut: no longer a parquet file
    cut = out / "labels-posts-00002.parquet"
    rows = datasets.Dataset.from_parquet(str(cut))
    rows.select(range(2)).to_parquet(str(cut))  # a valid parquet file with fewer rows than recorded
    (out / ".labels-posts-00001.parquet.abc.tmp").write_bytes(b"left by a killed run")
    again = mine_labels(corpus, out, SMALL)
    assert sorted(again["shards_labelled_this_run"]) == ["posts-00000.jsonl", "posts-00002.jsonl"]
    assert "labelling posts-00000.jsonl again" in caplog.text and "posts-00002.jsonl again" in caplog.text
    assert again["posts_labelled"] == first["posts_labelled"] and not list(out.glob(".*.tmp"))
    (out / "clusters" / "clusters.npz").write_bytes(b"PK\x03\x04")  # truncated archive
    with pytest.raises(MiningArtifactError, match="clusters: the cluster models are damaged"):
        ClusterModels.load(out / "clusters")
    refit = mine_labels(corpus, out, SMALL)
    assert "fitting the cluster models again" in caplog.text and len(refit["shards_labelled_this_run"]) == 3


def test_label_fraction_labels_a_stable_sample_of_the_other_posts(corpus, tmp_path):
    """The paper's two label sets from one corpus and one held-out subset: a random sample (VisE-1.2M) and all."""
    everything = mine_labels(corpus, tmp_path / "all", SMALL)
    sample = mine_labels(corpus, tmp_path / "sample", MiningSpec(**{**SMALL.__dict__, "label_fraction": 0.3}))
    all_ids, sample_ids = set(_labels(tmp_path / "all")["post_id"]), set(_labels(tmp_path / "sample")["post_id"])
    assert sample_ids < all_ids and 0.2 < len(sample_ids) / len(all_ids) < 0.4
    assert sample["holdout"] == everything["holdout"]  # the same held-out subset fits both runs' clusters
    sampled, whole = _labels(tmp_path / "sample"), _labels(tmp_path / "all")
    labels = dict(zip(sampled["post_id"], sampled["reaction_cluster"], strict=True))
    assert labels == {p: c for p, c in zip(whole["post_id"], whole["reaction_cluster"], strict=True) if p in labels}
    assert MiningSpec(label_fraction=1.0).key() == MiningSpec().key()  # earlier runs keep their key
    with pytest.raises(ValueError, match="label_fraction must be in"):
        MiningSpec(label_fraction=0.0)


def test_the_paper_mining_config_plans_posts_core_hours_and_disk(tmp_path):
    def plan(*overrides):
        run = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "mine_vise_labels.py"),
                str(ROOT / "configs" / "vise_mining_paper.yaml"),
                f"output_dir={tmp_path / 'out'}",
                *overrides,
                "--plan",
            ],
            capture_output=True,
            text=True,
            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        )
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout

    sample = plan()
    assert "posts: 270,000,000 (20,000,007 held out for the clusters, 1,230,000 labelled)" in sample
    assert "core-hours" in sample and "GB of label shards" in sample and not (tmp_path / "out").exists()
    assert "249,999,993 labelled" in plan("mining.label_fraction=1.0")  # VisE-250M's labels
    spec = MiningRunSpec.from_dict({"data": {"path": "posts"}})
    with pytest.raises(ValueError, match="give plan.posts"):
        plan_mining(spec)
