"""VisE mining at scale: one phi_C for both engines (emoji, no-signal comments), step 2 batched, one post policy."""

import itertools
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from hf_memotion.data.realistic_engagement import make_realistic_engagement
from hf_memotion.vise import MiningSpec, mine_labels
from hf_memotion.vise.comment_embedding import CommentEmbedding, tokenize
from hf_memotion.vise.mining import ClusterModels, check_post, label_posts

ROOT = Path(__file__).resolve().parents[1]
CONFIG = MiningSpec(comment_clusters=40, reaction_clusters=8, holdout_fraction=0.3, embedding_dim=32, seed=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_realistic_engagement(
        tmp_path_factory.mktemp("realistic") / "posts",
        n_posts=400,
        n_shards=2,
        vocabulary_size=3000,
        n_topics=12,
        comments_per_post=8,
        seed=0,
    )


def _labels(folder, pattern="labels-*.parquet"):
    files = sorted(str(p) for p in Path(folder).glob(pattern))
    return datasets.load_dataset("parquet", data_files=files, split="train").to_dict()


def test_emoji_and_symbols_are_tokens_punctuation_and_joiners_are_not():
    assert tokenize("OMG 😂😂 so FUNNY!!! ❤️ 10/10 €5 :)") == ["omg", "😂", "😂", "so", "funny", "❤", "10", "10", "€"]
    assert tokenize("👍🏻") == ["👍", "🏻"] and tokenize("...!?") == [] and tokenize("a b c") == []


def test_the_sparse_tfidf_equals_scikit_learns_and_unknown_comments_have_no_signal():
    texts = ["cute cat 😂 cat", "cute dog", "scary storm", "storm at sea 😱", "cat ❤️ cat cat", "a dog and a cat"]
    embedding = CommentEmbedding.fit(texts, dim=3)
    reference = TfidfVectorizer(
        tokenizer=tokenize,
        lowercase=False,
        token_pattern=None,
        sublinear_tf=True,
        vocabulary={w: i for i, w in enumerate(embedding.vocabulary)},
    ).fit(texts)
    probe = [*texts, "CAT cat 🐶 new-word", "zzzz qqq", "", "😱"]
    ours, theirs = embedding.tfidf(probe), reference.transform(probe)
    assert sparse.isspmatrix_csr(ours) and ours.dtype == np.float32
    np.testing.assert_allclose(ours.toarray(), theirs.toarray(), atol=1e-6)
    vectors = embedding.transform(probe)
    assert embedding.has_signal(vectors).tolist() == [True] * 7 + [False, False, True]
    np.testing.assert_allclose(np.linalg.norm(vectors[:7], axis=1), 1.0, atol=1e-5)
    assert not vectors[7:9].any()  # no known token: no direction, never a cluster


def test_a_batch_tfidf_equals_scikit_learns_on_hostile_unicode_in_every_order():
    """Final sigma, dotted capitals, NUL, combining marks, ZWJ sequences: each comment is tokenised on its own."""
    texts = [
        "ΟΔΟΣ ΟΔΟΣΣ",
        "Σ",
        "ΑΣ",
        "ΣΑ ΑΣ.",
        "İstanbul İİ",
        "nul\x00inside\x00",
        "\x00",
        "",
        "   ",
        "x",
        "hé́llo wörld",
        "नमस्ते दुनिया",
        "👨\u200d👩\u200d👧 family",
        "ǅemal ǄEMAL",
        "ß STRASSE",
        "Σ\x00Σ",
        "ΑΣ\x00ΑΣ",
        "😂😂",
    ]
    embedding = CommentEmbedding.fit(texts * 2, dim=3)
    vocabulary = {w: i for i, w in enumerate(embedding.vocabulary)}
    reference = TfidfVectorizer(
        tokenizer=tokenize, lowercase=False, token_pattern=None, sublinear_tf=True, vocabulary=vocabulary
    ).fit(texts * 2)
    rng = np.random.default_rng(0)
    for _ in range(20):  # in any order and neighbourhood
        probe = [texts[i] for i in rng.permutation(len(texts))]
        np.testing.assert_allclose(embedding.tfidf(probe).toarray(), reference.transform(probe).toarray(), atol=1e-6)
    assert {"οδος", "ας", "σα", "nul", "inside"} <= set(embedding.vocabulary)  # final sigma: per comment


def test_the_post_policy_ignores_extra_reaction_keys_and_names_bad_counts():
    assert check_post({"post_id": "p", "image": "x.png", "reactions": {"like": 40, "love": 2}}) is None
    assert check_post({"post_id": "p", "image": "x.png", "reactions": {"love": True}}) is not None
    assert check_post({"post_id": "p", "image": "x.png", "reactions": {"wow": 1.5}}) is not None
    assert check_post({"post_id": "p", "image": "x.png", "reactions": [1, 2]}).startswith("reactions must be")


def test_realistic_text_mines_with_emoji_clusters_and_counts_what_has_no_signal(corpus, tmp_path):
    report = mine_labels(corpus, tmp_path / "mined", CONFIG)
    models = ClusterModels.load(tmp_path / "mined" / "clusters")
    assert any(len(token) == 1 and ord(token) > 0x2000 for token in models.embedding.vocabulary)  # emoji are words
    emoji_only = models.assign_comments(["😂😂", "🔥", "zzzqxv", ""])
    assert emoji_only[0] >= 0 and emoji_only[1] >= 0 and emoji_only[2] == emoji_only[3] == -1
    assert report["comments_without_signal"] > 0  # gibberish comments: counted, no cluster
    assert report["extra_reaction_keys"]["like"] > 0 and report["malformed_rows"] == 0  # 'like' ignored, counted
    labels = _labels(tmp_path / "mined")
    assert report["posts_without_comments"] == sum(1 for ids in labels["comment_clusters"] if not ids)
    assert report["comment_cluster_sizes"]["non_empty"] >= 30


def test_step_two_labels_the_same_in_batches_as_post_by_post(corpus, tmp_path):
    mine_labels(corpus, tmp_path / "mined", CONFIG)
    models = ClusterModels.load(tmp_path / "mined" / "clusters")
    posts = [json.loads(line) for line in (corpus / "posts-00000.jsonl").read_text().splitlines()][:60]
    batch, details = label_posts(posts, models, CONFIG, str(corpus))
    alone = [label_posts([p], models, CONFIG, str(corpus))[0][0] for p in posts]
    assert batch == alone
    assert [d["extra_reaction_keys"] for d in details] == [
        sorted(k for k in (p["reactions"] or {}) if k == "like") for p in posts
    ]


def test_step_two_labels_the_same_with_the_int8_search_as_with_the_float32_search(corpus, tmp_path):
    from hf_memotion.vise.centroid_search import int8_search_available

    config = MiningSpec(comment_clusters=300, reaction_clusters=8, holdout_fraction=0.3, embedding_dim=32, seed=1)
    mine_labels(corpus, tmp_path / "mined", config)
    models = ClusterModels.load(tmp_path / "mined" / "clusters")
    posts = [
        json.loads(line) for shard in sorted(corpus.glob("posts-*.jsonl")) for line in shard.read_text().splitlines()
    ]
    posts[0]["comments"], posts[1]["comments"] = ["zzqx", "😂 😂", "zzqx"], []  # no signal, emoji repeated, none
    models.search_method = "float32"
    dense = label_posts(posts, models, config, str(corpus))
    models.search_method = "auto"
    assert label_posts(posts, models, config, str(corpus)) == dense
    assert models._search("comment_centroids").method == ("int8" if int8_search_available() else "float32")
    (first, second), (first_found, second_found) = dense[0][:2], dense[1][:2]
    assert (
        first_found["comments_without_signal"] == 2
        and first["comment_clusters"]
        and not first_found["no_comment_signal"]
    )
    assert second["comment_clusters"] == [] and second_found["comments_without_signal"] == 0


def test_single_token_comments_take_the_cluster_the_full_search_gives(corpus, tmp_path):
    from hf_memotion.vise.centroid_search import CentroidSearch

    config = MiningSpec(comment_clusters=300, reaction_clusters=8, holdout_fraction=0.3, embedding_dim=32, seed=1)
    mine_labels(corpus, tmp_path / "mined", config)
    models = ClusterModels.load(tmp_path / "mined" / "clusters")
    words = [t for t in models.embedding.vocabulary if len(t) > 1][:40]
    emoji = [t for t in models.embedding.vocabulary if len(t) == 1][:10]
    comments = [f"{w.upper()}!!" for w in words] + [f"{w} {w}" for w in words] + [e * 3 for e in emoji]
    comments += [f"{a} {b}" for a, b in itertools.pairwise(words)] + ["zzqx", "", words[0]]
    embedded = models.embedding.transform(comments)
    signal = models.embedding.has_signal(embedded)
    for method in ("float32", "auto"):
        models.search_method = method
        expected = np.full(len(comments), -1)
        expected[signal] = CentroidSearch(models.comment_centroids, method=method)(embedded[signal])
        assert models.assign_comments(comments).tolist() == expected.tolist()
        assert models.assign_comments(comments[::-1]).tolist() == expected[::-1].tolist()  # now from the cache
        cached = models._token_clusters[method][2]
        assert (cached >= 0).sum() == len(words) + len(emoji)  # each single token searched once, none else
    first = models.assign_comments([words[0], words[0].upper() + "?", f"{words[0]} {words[0]} {words[0]}"])
    assert len(set(first.tolist())) == 1


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["jsonl via a file:// URI", "parquet with embedded images"])
def test_the_spark_engine_mines_realistic_text_as_the_local_engine_does(tmp_path, layout):
    pytest.importorskip("pyspark")
    from sklearn.metrics import adjusted_rand_score

    from hf_memotion.vise.spark_mining import mine_labels_on_spark

    parquet = layout.startswith("parquet")
    corpus = make_realistic_engagement(
        tmp_path / "posts",
        n_posts=500,
        n_shards=2,
        vocabulary_size=3000,
        n_topics=12,
        comments_per_post=8,
        seed=2,
        image_bytes=parquet,
    )
    if not parquet:  # malformed rows: both engines skip and name them
        lines = (corpus / "posts-00000.jsonl").read_text().splitlines()
        bad = [
            '{"post_id": "bad1", "image": "x.png", "comments": "not a list"}',
            "not json at all",
            '{"post_id": "bad2", "image": "x.png", "reactions": {"love": -1}}',
        ]
        (corpus / "posts-00000.jsonl").write_text("\n".join([*lines[:5], *bad, *lines[5:]]) + "\n")
    local = mine_labels(corpus, tmp_path / "local", CONFIG)
    uri = corpus.as_uri() if not parquet else str(corpus)
    spark = mine_labels_on_spark(uri, tmp_path / "spark", CONFIG, cores=2)
    a, b = _labels(tmp_path / "local"), _labels(tmp_path / "spark", "labels-part-*.parquet")
    order = {p: i for i, p in enumerate(b["post_id"])}
    assert sorted(a["post_id"]) == sorted(b["post_id"])

    def top(labels, post):
        i = labels["post_id"].index(post) if labels is a else order[post]
        ids, weights = labels["comment_clusters"][i], labels["comment_weights"][i]
        return ids[int(np.argmax(weights))] if ids else -1

    posts = sorted(a["post_id"])
    comments = adjusted_rand_score([top(a, p) for p in posts], [top(b, p) for p in posts])
    reactions = adjusted_rand_score(
        [a["reaction_cluster"][a["post_id"].index(p)] for p in posts], [b["reaction_cluster"][order[p]] for p in posts]
    )
    assert comments >= 0.8 and reactions >= 0.8, (comments, reactions)
    for key in (
        "posts_labelled",
        "posts_without_comments",
        "comments_without_signal",
        "posts_without_comment_signal",
        "extra_reaction_keys",
        "posts_without_reactions",
        "malformed_rows",
    ):
        assert spark[key] == local[key], key
    assert local["malformed_rows"] == (0 if parquet else 3)
    if parquet:  # embedded images stay embedded
        assert all(image["bytes"] for image in b["image"]) and all(image["path"] is None for image in b["image"])
    else:
        assert {e["post_id"] for e in spark["malformed_examples"]} == {"bad1", "bad2", None}
        assert all(Path(image["path"]).is_absolute() and "file:" not in image["path"] for image in b["image"])
    assert ClusterModels.load(tmp_path / "spark" / "clusters").comment_centroids.shape == (40, 32)
