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
``scripts/bench_mining.py`` measures it), else scikit-learn's, and the same iterations distributed on Spark. So
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

Examples:
    >>> reaction_vector({"haha": 3, "sorry": 0, "angry": 0, "wow": 0, "love": 4}).round(2).tolist()
    [0.6, 0.0, 0.0, 0.0, 0.8]
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from scipy import sparse
from sklearn.cluster import KMeans

from hf_memotion.data.engagement import REACTIONS, engagement_shards
from hf_memotion.folder_safety import check_data_name
from hf_memotion.io_utils import atomic_open, atomic_write_text
from hf_memotion.specs import deprecated_names
from hf_memotion.vise.centroid_search import CentroidSearch, Method
from hf_memotion.vise.comment_embedding import CommentEmbedding, fit_sample_rank

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


@dataclass(frozen=True)
class MiningSpec:
    """Settings of both mining steps (the paper's values by default).

    Attributes:
        comment_clusters: K of the comment K-means (paper: 5000); capped at the number of held-out comments.
        reaction_clusters: K of the reaction K-means (paper: 128); capped at the held-out posts with reactions.
        holdout_fraction: Share of posts used for step 1 and kept out of the labels.
        max_comments: Comments sampled per post (paper: 100).
        embedding_dim: Dimensions of the comment embedding (truncated SVD of TF-IDF).
        max_features: Vocabulary size of the TF-IDF (the most frequent words and emoji).
        fit_sample: Held-out comments the vocabulary, IDF and projection are fitted on (the ones of lowest hash
            rank; all of them when fewer). K-means runs on every held-out comment.
        seed: Seed of the held-out draw, comment sampling, SVD and K-means.
        kmeans_backend: ``"faiss"`` (faiss-cpu: measured at 94% of this machine's matmul rate),
            ``"sklearn"`` (scikit-learn's Lloyd: 14%) or ``"auto"`` (faiss when installed). The backend
            used is recorded with the models; different backends give different (each deterministic) clusters.
        kmeans_iterations: Lloyd iterations of the K-means (every backend and engine runs exactly these).
        comment_encoder: Instead of TF-IDF, a transformers text encoder (a local folder, or a Hub id fetched
            into the HF cache) whose attention-masked mean of last hidden states, L2-normalised, is phi_C.
            Loaded without remote code.
        encoder_max_length: Tokens per comment for ``comment_encoder``.
    """

    comment_clusters: int = 5000
    reaction_clusters: int = 128
    holdout_fraction: float = 0.1
    max_comments: int = 100
    embedding_dim: int = 256
    max_features: int = 100_000
    fit_sample: int = 1_000_000
    seed: int = 0
    kmeans_backend: str = "auto"
    kmeans_iterations: int = 25
    comment_encoder: str | None = None
    encoder_max_length: int = 64

    def key(self) -> str:
        """A short hash of the settings (finished shards are reused only under the same key)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _unit(seed: int, text: str) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_holdout(post_id: str, fraction: float, seed: int) -> bool:
    """Whether a post belongs to the held-out subset (a stable function of its id: same in every process)."""
    return _unit(seed, f"holdout:{post_id}") < fraction


def sample_comments(comments: Sequence[str], max_comments: int, post_id: str, seed: int) -> list[str]:
    """Up to ``max_comments`` non-empty comments, drawn without replacement with a per-post seed."""
    kept = [c for c in comments if isinstance(c, str) and c.strip()]
    if len(kept) <= max_comments:
        return kept
    rng = np.random.default_rng(int(_unit(seed, f"comments:{post_id}") * 2**32))
    return [kept[i] for i in sorted(rng.choice(len(kept), max_comments, replace=False))]


def reaction_vector(reactions: Mapping[str, int]) -> np.ndarray | None:
    """The L2-normalised counts of the five reactions, or ``None`` when the post has none."""
    counts = np.array([float(reactions.get(name, 0) or 0) for name in REACTIONS])
    norm = float(np.linalg.norm(counts))
    return counts / norm if norm > 0 else None


@dataclass
class ClusterModels:
    """Step 1's result: phi_C and both sets of K-means centroids (plain arrays; no pickle on disk).

    Attributes:
        embedding: The TF-IDF comment embedding (``None`` with a ``comment_encoder``).
        comment_centroids: ``(k, dim)``.
        reaction_centroids: ``(k, 5)``.
        settings: The mining settings and what was fitted.
        search_method: How comments find their nearest centroid: ``"auto"``, ``"int8"`` or ``"float32"``
            (:class:`~hf_memotion.vise.centroid_search.CentroidSearch`; the same clusters, only the speed differs).
    """

    embedding: CommentEmbedding | None
    comment_centroids: np.ndarray
    reaction_centroids: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    search_method: Method = "auto"
    _encoder: Any = field(default=None, repr=False)  # (tokenizer, model) of a comment_encoder, loaded once
    _searches: dict[tuple[str, str], tuple[np.ndarray, CentroidSearch]] = field(default_factory=dict, repr=False)
    # per search method: the search and embedding they hold for, and each vocabulary token's cluster (-2: not yet)
    _token_clusters: dict[str, tuple[CentroidSearch, CommentEmbedding, np.ndarray]] = field(
        default_factory=dict, repr=False
    )

    def _search(self, name: str) -> CentroidSearch:
        """The search over ``comment_centroids`` or ``reaction_centroids``, prepared once per array and method."""
        centroids, key = getattr(self, name), (name, self.search_method)
        cached = self._searches.get(key)
        if cached is None or cached[0] is not centroids:
            cached = self._searches[key] = (centroids, CentroidSearch(centroids, self.search_method))
        return cached[1]

    def embed_comments(self, comments: Sequence[str]) -> np.ndarray:
        """phi_C, ``(n, dim)`` float32, L2-normalised; a zero row for a comment without signal."""
        if self.settings.get("comment_encoder"):
            projected = self._encode(comments)
            norms = np.linalg.norm(projected, axis=1, keepdims=True)
            return projected / np.maximum(norms, 1e-12)
        return self.embedding.transform(comments)

    def _encode(self, comments: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self._encoder is None:
            name = self.settings["comment_encoder"]
            self._encoder = (AutoTokenizer.from_pretrained(name), AutoModel.from_pretrained(name).eval())
        tokenizer, model = self._encoder
        length = int(self.settings.get("encoder_max_length", 64))
        out = []
        with torch.inference_mode():
            for start in range(0, len(comments), batch_size):
                texts = list(comments[start : start + batch_size])
                batch = tokenizer(texts, padding=True, truncation=True, max_length=length, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), dtype=np.float32)

    def assign_comments(self, comments: Sequence[str]) -> np.ndarray:
        """The nearest comment centroid of each comment; ``-1`` for a comment without signal.

        Each distinct comment is embedded and assigned once (short comments and emoji repeat a lot), and a comment
        with a single known token ("wow!!", "WOW", "😂😂😂") takes that token's cluster, searched once per token.
        """
        distinct = dict.fromkeys(comments)
        assigned = self._assign_distinct(list(distinct))
        if len(distinct) == len(comments):
            return assigned
        position = {comment: i for i, comment in enumerate(distinct)}
        return assigned[[position[c] for c in comments]]

    def _assign_distinct(self, comments: list[str]) -> np.ndarray:
        search = self._search("comment_centroids")
        if self.embedding is None or self.settings.get("comment_encoder"):
            return _nearest_with_signal(self.embed_comments(comments), search)
        tfidf = self.embedding.tfidf(comments)
        known = np.diff(tfidf.indptr)
        assigned = np.full(len(comments), -1, dtype=np.int64)
        single, several = np.flatnonzero(known == 1), np.flatnonzero(known > 1)
        if len(single):
            assigned[single] = self._token_cluster(tfidf.indices[tfidf.indptr[single]], search)
        if len(several):
            assigned[several] = _nearest_with_signal(self.embedding.project(tfidf[several]), search)
        return assigned

    def _token_cluster(self, columns: np.ndarray, search: CentroidSearch) -> np.ndarray:
        """The cluster of comments whose one known token is ``columns``, each token searched once.

        Such a comment's TF-IDF row is exactly 1.0 at its token whatever the count (a value divided by its own
        norm), so its phi_C is the projection of that one-hot row: the same vector, bit for bit, for every such
        comment, and the same cluster as :meth:`CommentEmbedding.transform` and the search would give.
        """
        cached = self._token_clusters.get(self.search_method)
        if cached is None or cached[0] is not search or cached[1] is not self.embedding:
            clusters = np.full(len(self.embedding.vocabulary), -2)
            cached = self._token_clusters[self.search_method] = (search, self.embedding, clusters)
        clusters = cached[2]
        missing = np.unique(columns[clusters[columns] == -2])
        if len(missing):
            ones, rows = np.ones(len(missing), dtype=np.float32), np.arange(len(missing) + 1)
            one_hot = sparse.csr_matrix((ones, missing.astype(np.int32), rows), shape=(len(missing), len(clusters)))
            clusters[missing] = _nearest_with_signal(self.embedding.project(one_hot), search)
        return clusters[columns]

    def assign_reactions(self, vectors: np.ndarray) -> np.ndarray:
        """The nearest reaction centroid of each L2-normalised reaction vector."""
        return self._search("reaction_centroids")(np.asarray(vectors, dtype=np.float32))

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``clusters.npz`` (arrays) and ``clusters.json`` (vocabulary and settings), atomically."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        arrays = self.embedding.arrays() if self.embedding is not None else {}
        with atomic_open(target / "clusters.npz", "wb") as handle:
            np.savez(
                handle, comment_centroids=self.comment_centroids, reaction_centroids=self.reaction_centroids, **arrays
            )
        vocabulary = self.embedding.vocabulary if self.embedding is not None else []
        atomic_write_text(
            target / "clusters.json",
            json.dumps({"settings": self.settings, "vocabulary": vocabulary}, ensure_ascii=False),
        )

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ClusterModels:
        """Read what :meth:`save` wrote (``allow_pickle=False``).

        Raises:
            MiningArtifactError: A missing, truncated or otherwise damaged file, named in one line.
        """
        import zipfile

        target = Path(folder)
        try:
            meta = json.loads((target / "clusters.json").read_text())
            with np.load(target / "clusters.npz", allow_pickle=False) as arrays:
                embedding = None
                if "components" in arrays:
                    embedding = CommentEmbedding(list(meta["vocabulary"]), arrays["idf"], arrays["components"])
                return cls(
                    embedding,
                    comment_centroids=arrays["comment_centroids"],
                    reaction_centroids=arrays["reaction_centroids"],
                    settings=dict(meta["settings"]),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise MiningArtifactError(
                f"{target}: the cluster models are damaged ({type(err).__name__}: {err}); delete the folder to fit "
                "them again"
            ) from None


def _nearest_with_signal(vectors: np.ndarray, search: CentroidSearch) -> np.ndarray:
    """Each phi_C row's nearest centroid; ``-1`` for a zero row (a comment without signal)."""
    signal = CommentEmbedding.has_signal(vectors)
    assigned = np.full(len(vectors), -1, dtype=np.int64)
    assigned[signal] = search(vectors[signal])
    return assigned


def lloyd_sums(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Lloyd step's partial result on ``points``: per centroid the sum of its nearest points and their count.

    What a Spark task computes on its partition; the driver adds the partial results and divides.
    """
    assigned = CentroidSearch(centroids)(points)
    sums = np.zeros(centroids.shape, dtype=np.float64)
    np.add.at(sums, assigned, points)
    return sums, np.bincount(assigned, minlength=len(centroids)).astype(np.float64)


def lloyd_update(centroids: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """New centroids from the added partial results; an empty cluster keeps its centroid."""
    updated = np.asarray(centroids, dtype=np.float32).copy()
    used = counts > 0
    updated[used] = (sums[used] / counts[used, None]).astype(np.float32)
    return updated


# ---------------------------------------------------------------------------------------------
# Reading shards row by row (so that one malformed row is reported, not fatal)
# ---------------------------------------------------------------------------------------------


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


def check_post(row: Any) -> str | None:
    """Why a post row is malformed, or ``None`` (the one policy of both engines; extra reaction keys are allowed).

    Examples:
        >>> check_post({"post_id": "p1", "image": "a.png", "reactions": {"love": 2, "like": 7}}) is None
        True
        >>> check_post({"post_id": "p1", "image": "a.png", "reactions": {"love": -2}})
        'reaction counts must be non-negative integers'
        >>> check_post({"post_id": "p1", "image": "../../etc/passwd"})
        "image '../../etc/passwd' leaves the corpus folder (absolute or ..): names must be relative"
    """
    if isinstance(row, Exception):
        return f"not JSON: {row}"
    if not isinstance(row, dict) or not isinstance(row.get("post_id"), str) or not row["post_id"]:
        return "no post_id string"
    if row.get("image") is None:
        return "no image"
    image = row["image"]
    if isinstance(image, dict):  # {"bytes", "path"}: a path is read only when there are no bytes
        image = image.get("path") if image.get("bytes") is None else image["bytes"]
    if not isinstance(image, (bytes, bytearray)):
        try:
            check_data_name(image, "image")
        except ValueError:
            return f"image {str(image)[:80]!r} leaves the corpus folder (absolute or ..): names must be relative"
    comments = row.get("comments")
    if comments is not None and (not isinstance(comments, list) or not all(isinstance(c, str) for c in comments)):
        return "comments must be a list of strings"
    reactions = row.get("reactions")
    if reactions is not None:
        if not isinstance(reactions, dict):
            return f"reactions must be a mapping of {list(REACTIONS)}"
        values = [reactions.get(name) for name in REACTIONS]
        if not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in values if v is not None
        ):
            return "reaction counts must be non-negative integers"
    return None


def extra_reaction_keys(row: Mapping[str, Any]) -> list[str]:
    """Reaction keys of a valid post that are not the five buttons (ignored; the reports count them)."""
    reactions = row.get("reactions") or {}
    return sorted(k for k, v in reactions.items() if k not in REACTIONS and v is not None)


def _posts(shard: Path, errors: list[dict]) -> Iterator[dict]:
    for number, row in _raw_rows(shard):
        problem = check_post(row)
        if problem is None:
            yield row
        else:
            post_id = row.get("post_id") if isinstance(row, dict) else None
            errors.append({"shard": shard.name, "row": number, "post_id": post_id, "error": problem})


# ---------------------------------------------------------------------------------------------
# Step 1
# ---------------------------------------------------------------------------------------------


def _kmeans_backend(choice: str) -> str:
    if choice not in ("auto", "faiss", "sklearn"):
        raise ValueError(f"kmeans_backend must be 'auto', 'faiss' or 'sklearn', got {choice!r}")
    if choice == "sklearn":
        return choice
    try:
        import faiss  # noqa: F401
    except ImportError:
        if choice == "faiss":
            raise ImportError("kmeans_backend='faiss' needs faiss-cpu: pip install 'hf-memotion[vise]'") from None
        return "sklearn"
    return "faiss"


def initial_centroids(points_in_rank_order: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` distinct points (rows are in hash-rank order, the same in both engines)."""
    rounded = np.round(np.asarray(points_in_rank_order, dtype=np.float32), 6)
    _, first = np.unique(rounded, axis=0, return_index=True)
    return np.asarray(points_in_rank_order, dtype=np.float32)[np.sort(first)[:k]]


def fit_kmeans(points_in_rank_order: np.ndarray, k: int, config: MiningSpec, backend: str) -> np.ndarray:
    """K-means centroids, ``(k', d)`` float32 (``k'``: at most the distinct points), from :func:`initial_centroids`.

    Exactly ``config.kmeans_iterations`` Lloyd iterations with faiss or scikit-learn (``tol=0``).
    """
    points = np.ascontiguousarray(points_in_rank_order, dtype=np.float32)
    init = initial_centroids(points, k)
    if len(init) < 2:
        return init
    if backend == "faiss":
        import faiss

        # every point is used (max_points_per_centroid): faiss would otherwise subsample large sets
        model = faiss.Kmeans(
            points.shape[1],
            len(init),
            niter=config.kmeans_iterations,
            seed=config.seed,
            verbose=False,
            max_points_per_centroid=len(points),
            min_points_per_centroid=1,
        )
        model.train(points, init_centroids=init)
        return np.asarray(model.centroids, dtype=np.float32)
    model = KMeans(len(init), init=init, n_init=1, max_iter=config.kmeans_iterations, tol=0.0, algorithm="lloyd")
    return model.fit(points).cluster_centers_.astype(np.float32)


def fit_comment_embedding(sample_in_rank_order: Sequence[str], config: MiningSpec) -> CommentEmbedding | None:
    """phi_C fitted on the held-out comments of lowest rank (``None``: a ``comment_encoder`` is phi_C)."""
    if config.comment_encoder:
        return None
    return CommentEmbedding.fit(
        list(sample_in_rank_order[: config.fit_sample]),
        dim=config.embedding_dim,
        max_features=config.max_features,
        seed=config.seed,
    )


def reaction_rank(seed: int, post_id: str) -> float:
    """A held-out post's place in the reaction K-means' initial order (a hash of its id)."""
    return _unit(seed, f"reaction:{post_id}")


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
    backend = _kmeans_backend(config.kmeans_backend)
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


# ---------------------------------------------------------------------------------------------
# Step 2
# ---------------------------------------------------------------------------------------------


def label_features() -> datasets.Features:
    """Schema of a label shard: the image reference and the two targets.

    ``comment_clusters``/``comment_weights``: the soft multi-label target (cluster ids and normalised
    counts; empty for a post without comments). ``reaction_cluster``: ``-1`` for a post without reactions.
    """
    return datasets.Features(
        {
            "post_id": datasets.Value("string"),
            "image": datasets.Image(decode=False),
            "comment_clusters": datasets.Sequence(datasets.Value("int32")),
            "comment_weights": datasets.Sequence(datasets.Value("float32")),
            "reaction_cluster": datasets.Value("int32"),
        }
    )


def _image_reference(image: Any, folder: str, post_id: Any = None) -> dict[str, Any]:
    """``{"bytes", "path"}`` of a post's image; a relative path is joined to the shard's folder (or URI).

    A path that leaves the shard's folder (absolute, ``..``) is refused, naming the post. Without a folder the
    reference is one a reader already resolved (and checked with :func:`check_post`): it is kept as it is.
    """
    if isinstance(image, dict):  # parquet written by datasets: {"bytes", "path"}
        if image.get("bytes") is not None or not folder:
            return {"bytes": image.get("bytes"), "path": image.get("path")}
        image = image.get("path")
    if isinstance(image, (bytes, bytearray)):
        return {"bytes": bytes(image), "path": None}
    if not folder:
        return {"bytes": None, "path": str(image)}
    path = check_data_name(image, f"post {post_id} of {folder}", folder)
    return {"bytes": None, "path": f"{folder.rstrip('/')}/{path}" if "://" in folder else os.path.join(folder, path)}


class MiningArtifactError(RuntimeError):
    """A file of a mining output folder is damaged; the message names it."""


def _digest(path: Path) -> str:
    import hashlib

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


def label_posts(
    posts: Sequence[Mapping[str, Any]], models: ClusterModels, config: MiningSpec, source: str = ""
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Step 2 for a batch of valid, not held-out posts: their label rows, and what was found in each post.

    The comments of the whole batch are embedded and assigned in one go (one sparse product, one nearest-centroid
    search: :class:`~hf_memotion.vise.centroid_search.CentroidSearch`). Both engines call this function on their
    batches.

    Returns:
        ``(rows, details)``: rows in :func:`label_features`' schema (the image reference as the post gave it, a
        relative path joined to ``source``); per post ``comments_without_signal`` (sampled comments with no known
        token), ``no_comment_signal`` (it had comments, none with signal) and ``extra_reaction_keys``.
    """
    with _garbage_collection_paused():
        sampled = [
            sample_comments(p.get("comments") or [], config.max_comments, p["post_id"], config.seed) for p in posts
        ]
        flat = [c for comments in sampled for c in comments]
        assigned = models.assign_comments(flat) if flat else np.zeros(0, dtype=np.int64)
        vectors = [reaction_vector(p.get("reactions") or {}) for p in posts]
        with_reactions = [i for i, v in enumerate(vectors) if v is not None]
        reaction_ids = np.full(len(posts), -1, dtype=np.int64)
        if with_reactions:
            reaction_ids[with_reactions] = models.assign_reactions(np.stack([vectors[i] for i in with_reactions]))
        # each post's clusters and their shares, for the whole batch at once: one sort of (post, cluster) keys
        post_of = np.repeat(np.arange(len(posts)), [len(comments) for comments in sampled])
        known = assigned >= 0
        width = max(1, int(assigned.max()) + 1) if len(assigned) else 1
        keys, counts = np.unique(post_of[known] * width + assigned[known], return_counts=True)
        owner, clusters = np.divmod(keys, width)
        shares = counts / np.bincount(owner, weights=counts, minlength=len(posts))[owner]
        bounds = np.searchsorted(owner, np.arange(len(posts) + 1)).tolist()
        silent = np.bincount(post_of[~known], minlength=len(posts)).tolist()
        clusters, shares, reaction_ids = clusters.tolist(), shares.tolist(), reaction_ids.tolist()
        rows, details = [], []
        for i, (post, comments) in enumerate(zip(posts, sampled, strict=True)):
            first, last = bounds[i], bounds[i + 1]
            details.append(
                {
                    "comments_without_signal": silent[i],
                    "no_comment_signal": bool(comments) and first == last,
                    "extra_reaction_keys": extra_reaction_keys(post),
                }
            )
            rows.append(
                {
                    "post_id": post["post_id"],
                    "image": _image_reference(post["image"], source, post["post_id"]),
                    "comment_clusters": clusters[first:last],
                    "comment_weights": shares[first:last],
                    "reaction_cluster": reaction_ids[i],
                }
            )
    return rows, details


@contextlib.contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting still frees everything).

    Labelling a batch allocates some 10^5 short-lived lists and strings and no reference cycle; each allocation burst
    triggers collections that walk every live object, the shard's label rows included (measured: a batch's
    tokenisation took 3x as long whenever a full collection fell in it).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def summarize_details(details: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report's counts from :func:`label_posts`' per-post details."""
    extra: dict[str, int] = {}
    for detail in details:
        for key in detail["extra_reaction_keys"]:
            extra[key] = extra.get(key, 0) + 1
    return {
        "comments_without_signal": sum(d["comments_without_signal"] for d in details),
        "posts_without_comment_signal": sum(d["no_comment_signal"] for d in details),
        "extra_reaction_keys": extra,
    }


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
    source = Path(shard)
    errors: list[dict] = []
    posts = (
        row for row in _posts(source, errors) if not is_holdout(row["post_id"], config.holdout_fraction, config.seed)
    )
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


def _size_statistics(sizes: np.ndarray) -> dict[str, float]:
    used = sizes[sizes > 0]
    share = used / used.sum() if used.sum() else used
    return {
        "clusters": len(sizes),
        "non_empty": len(used),
        "min": int(used.min()) if len(used) else 0,
        "median": float(np.median(used)) if len(used) else 0.0,
        "max": int(used.max()) if len(used) else 0,
        "largest_share": float(share.max()) if len(share) else 0.0,
        "effective_clusters": float(np.exp(-(share * np.log(share)).sum())) if len(share) else 0.0,
    }


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
    config = config or MiningSpec()
    shards = engagement_shards(corpus)
    output = Path(output_dir)
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
            with ProcessPoolExecutor(max_workers=num_proc) as pool:
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


def corpus_description(corpus: str | os.PathLike) -> dict[str, Any]:
    """Where the posts came from, for reports and model cards: the path, and whether it is the demo corpus."""
    return {"path": str(corpus), "demo": (Path(str(corpus)) / ".demo_engagement").is_file()}


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
        "comment_cluster_sizes": _size_statistics(comment_sizes),
        "reaction_cluster_sizes": _size_statistics(reaction_sizes.astype(float)),
    }


#: Old names, still served with a ``FutureWarning``.
__getattr__ = deprecated_names(__name__, {"MiningConfig": "MiningSpec"})
