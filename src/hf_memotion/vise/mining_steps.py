"""The steps of VisE label mining that both engines run (Section 3.1-3.2 of the VisE paper).

The local engine (:mod:`hf_memotion.vise.mining`) and the Spark engine (:mod:`hf_memotion.vise.spark_mining`)
call these same functions, so they give the same labels: the settings (:class:`MiningSpec`), the held-out rule
and comment sampling, the post checks and the extra-reaction-key policy (:func:`check_post`), the K-means
initial centroids, backends and Lloyd steps, phi_C's fit, the label schema and step 2 (:func:`label_posts`).

Examples:
    >>> reaction_vector({"haha": 3, "sorry": 0, "angry": 0, "wow": 0, "love": 4}).round(2).tolist()
    [0.6, 0.0, 0.0, 0.0, 0.8]
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from sklearn.cluster import KMeans

from hf_memotion.data.engagement import REACTIONS
from hf_memotion.folder_safety import check_data_name
from hf_memotion.vise.centroid_search import CentroidSearch
from hf_memotion.vise.cluster_models import ClusterModels
from hf_memotion.vise.comment_embedding import CommentEmbedding

__all__ = [
    "MINING_SIGNATURE",
    "MiningSpec",
    "check_post",
    "corpus_description",
    "extra_reaction_keys",
    "fit_comment_embedding",
    "fit_kmeans",
    "image_reference",
    "initial_centroids",
    "is_holdout",
    "is_labelled",
    "kmeans_backend",
    "label_features",
    "label_posts",
    "lloyd_sums",
    "lloyd_update",
    "reaction_rank",
    "reaction_vector",
    "sample_comments",
    "size_statistics",
    "summarize_details",
]

#: What a mining output folder holds once a run has started in it (a folder holding none of these is not one).
MINING_SIGNATURE = ("mining.json", "clusters", "holdout.json")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningSpec:
    """Settings of both mining steps (the paper's values by default).

    Attributes:
        comment_clusters: K of the comment K-means (paper: 5000); capped at the number of held-out comments.
        reaction_clusters: K of the reaction K-means (paper: 128); capped at the held-out posts with reactions.
        holdout_fraction: Share of posts used for step 1 and kept out of the labels (the paper fits its clusters on
            a separate random subset of 20M posts).
        label_fraction: Share of the other posts that get labels, a stable random sample by post id (the paper
            labels a random 1.23M sample and the whole 250M set: two runs over one corpus, 1.0 being all).
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
        encoder_device: Where ``comment_encoder`` runs: ``"cpu"`` (the default), ``"auto"`` (a GPU when there is
            one), ``"cuda"``, ``"cuda:N"``. Not part of the settings' key (a run may resume on another device); on
            a GPU with ``num_proc`` > 1 the labelling workers are spawned, not forked.
    """

    comment_clusters: int = 5000
    reaction_clusters: int = 128
    holdout_fraction: float = 0.1
    label_fraction: float = 1.0
    max_comments: int = 100
    embedding_dim: int = 256
    max_features: int = 100_000
    fit_sample: int = 1_000_000
    seed: int = 0
    kmeans_backend: str = "auto"
    kmeans_iterations: int = 25
    comment_encoder: str | None = None
    encoder_max_length: int = 64
    encoder_device: str = "cpu"

    def __post_init__(self):
        if not 0.0 < float(self.label_fraction) <= 1.0:
            raise ValueError(f"mining.label_fraction must be in (0, 1], got {self.label_fraction}")

    def key(self) -> str:
        """A short hash of the settings (finished shards are reused only under the same key; the device is not in it).

        Examples:
            >>> MiningSpec(encoder_device="cuda").key() == MiningSpec().key()
            True
        """
        values = asdict(self)
        values.pop("encoder_device")
        if values["label_fraction"] == 1.0:  # every post, as before the setting existed: earlier runs keep their key
            values.pop("label_fraction")
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _unit(seed: int, text: str) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_holdout(post_id: str, fraction: float, seed: int) -> bool:
    """Whether a post belongs to the held-out subset (a stable function of its id: same in every process)."""
    return _unit(seed, f"holdout:{post_id}") < fraction


def is_labelled(post_id: str, config: MiningSpec) -> bool:
    """Whether step 2 labels a post: not held out, and in the ``label_fraction`` sample (a stable function of its id).

    Examples:
        >>> sample = MiningSpec(holdout_fraction=0.1, label_fraction=0.25)
        >>> picked = [i for i in range(10_000) if is_labelled(f"p{i}", sample)]
        >>> round(len(picked) / 10_000, 2), is_labelled("p1", MiningSpec(holdout_fraction=1.0))
        (0.23, False)
    """
    if is_holdout(post_id, config.holdout_fraction, config.seed):
        return False
    return config.label_fraction >= 1.0 or _unit(config.seed, f"label:{post_id}") < config.label_fraction


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


def kmeans_backend(choice: str) -> str:
    """The K-means backend to use for ``choice`` (``"auto"``: faiss when installed, else scikit-learn)."""
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


def image_reference(image: Any, folder: str, post_id: Any = None) -> dict[str, Any]:
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
                    "image": image_reference(post["image"], source, post["post_id"]),
                    "comment_clusters": clusters[first:last],
                    "comment_weights": shares[first:last],
                    "reaction_cluster": reaction_ids[i],
                }
            )
    return rows, details


def size_statistics(sizes: np.ndarray) -> dict[str, float]:
    """Summary statistics of cluster sizes (what the reports print)."""
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


def corpus_description(corpus: str | os.PathLike) -> dict[str, Any]:
    """Where the posts came from, for reports and model cards: the path, and whether it is the demo corpus."""
    return {"path": str(corpus), "demo": (Path(str(corpus)) / ".demo_engagement").is_file()}


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
