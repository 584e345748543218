"""VisE pseudo-labels from engagement (Section 3.1-3.2 of the VisE paper), on one machine.

Step 1, **cluster generation**, on a held-out random subset of posts (kept out of pretraining):
comments become document features phi_C and are clustered with K-means (k=5000 in the paper);
reaction counts become L2-normalised 5-vectors clustered with K-means (k=128).
Step 2, **label creation**, for every other post: up to 100 sampled comments each get their
nearest comment cluster, and their normalised counts are the post's soft multi-label target; the
reaction vector's nearest cluster is its reaction label.

phi_C: the paper uses "TF-IDF weighted document embeddings". Without downloadable word vectors,
the word space is learned from the held-out comments themselves: TF-IDF vectors projected by a
truncated SVD (latent semantic analysis) and L2-normalised, i.e. each comment is the TF-IDF
weighted sum of its words' SVD embeddings. K-means is faiss's when faiss-cpu is installed (the
``vise`` extra; ``scripts/bench_mining.py`` measured it at 94% of the machine's matmul rate against
14% for scikit-learn's Lloyd), else scikit-learn's.

Layout of an output folder::

    clusters/clusters.npz, clusters/clusters.json   the fitted models (arrays + settings; no pickle)
    labels-<shard>.parquet                          one per input shard (held-out posts excluded)
    labels-<shard>.errors.jsonl                     that shard's malformed rows (row number, post id, why)
    mining.json                                     settings, per-shard counts, cluster-size statistics

Shards are written atomically and a finished shard is never redone: a killed run started again
with the same settings resumes where it stopped. Shards are labelled by ``num_proc`` processes.

Example:
    >>> reaction_vector({"haha": 3, "sorry": 0, "angry": 0, "wow": 0, "love": 4}).round(2).tolist()
    [0.6, 0.0, 0.0, 0.0, 0.8]
"""

from __future__ import annotations

import hashlib
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
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from hf_memotion.data.engagement import REACTIONS, engagement_shards
from hf_memotion.io_utils import atomic_open, atomic_write_text

__all__ = [
    "ClusterModels",
    "MiningArtifactError",
    "MiningConfig",
    "fit_cluster_models",
    "is_holdout",
    "label_features",
    "mine_labels",
    "reaction_vector",
    "sample_comments",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningConfig:
    """Settings of both mining steps (the paper's values by default).

    Attributes:
        comment_clusters: K of the comment K-means (paper: 5000); capped at the number of held-out comments.
        reaction_clusters: K of the reaction K-means (paper: 128); capped at the held-out posts with reactions.
        holdout_fraction: Share of posts used for step 1 and kept out of the labels.
        max_comments: Comments sampled per post (paper: 100).
        embedding_dim: Dimensions of the comment embedding (truncated SVD of TF-IDF).
        max_features: Vocabulary size of the TF-IDF.
        seed: Seed of the held-out draw, comment sampling, SVD and K-means.
        kmeans_backend: ``"faiss"`` (faiss-cpu: measured at 94% of this machine's matmul rate),
            ``"sklearn"`` (scikit-learn's Lloyd: 14%) or ``"auto"`` (faiss when installed). The backend
            used is recorded with the models; different backends give different (each deterministic) clusters.
        kmeans_iterations: Iterations of the faiss K-means (scikit-learn runs to convergence, at most 300).
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
    """Step 1's result: the comment embedding and both sets of K-means centroids (plain arrays)."""

    vocabulary: list[str]
    idf: np.ndarray
    components: np.ndarray
    comment_centroids: np.ndarray
    reaction_centroids: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    _cache: Any = field(default=None, repr=False)  # the TF-IDF vectorizer, or (tokenizer, encoder)

    def _tfidf(self) -> TfidfVectorizer:
        if self._cache is None:
            vectorizer = TfidfVectorizer(vocabulary={w: i for i, w in enumerate(self.vocabulary)}, sublinear_tf=True)
            vectorizer.idf_ = self.idf
            self._cache = vectorizer
        return self._cache

    def embed_comments(self, comments: Sequence[str]) -> np.ndarray:
        """phi_C, ``(n, dim)``, L2-normalised: SVD projections of TF-IDF vectors, or the sentence encoder's."""
        if self.settings.get("comment_encoder"):
            projected = self._encode(comments)
        else:
            projected = np.asarray(self._tfidf().transform(comments) @ self.components.T, dtype=np.float32)
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return projected / np.maximum(norms, 1e-12)

    def _encode(self, comments: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self._cache is None:  # (tokenizer, model), loaded once per process
            name = self.settings["comment_encoder"]
            self._cache = (AutoTokenizer.from_pretrained(name), AutoModel.from_pretrained(name).eval())
        tokenizer, model = self._cache
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
        """The nearest comment centroid of each comment."""
        return _nearest(self.embed_comments(comments), self.comment_centroids)

    def assign_reactions(self, vectors: np.ndarray) -> np.ndarray:
        """The nearest reaction centroid of each L2-normalised reaction vector."""
        return _nearest(np.asarray(vectors, dtype=np.float32), self.reaction_centroids)

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``clusters.npz`` (arrays) and ``clusters.json`` (vocabulary and settings), atomically."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        with atomic_open(target / "clusters.npz", "wb") as handle:
            np.savez(handle, idf=self.idf, components=self.components, comment_centroids=self.comment_centroids,
                     reaction_centroids=self.reaction_centroids)  # fmt: skip
        atomic_write_text(
            target / "clusters.json", json.dumps({"settings": self.settings, "vocabulary": self.vocabulary})
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
                return cls(vocabulary=list(meta["vocabulary"]), idf=arrays["idf"], components=arrays["components"],
                           comment_centroids=arrays["comment_centroids"],
                           reaction_centroids=arrays["reaction_centroids"],
                           settings=dict(meta["settings"]))  # fmt: skip
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise MiningArtifactError(
                f"{target}: the cluster models are damaged ({type(err).__name__}: {err}); delete the folder to fit "
                "them again"
            ) from None


def _nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    distances = (centroids**2).sum(1)[None, :] - 2 * points @ centroids.T  # + |x|^2, the same for every centroid
    return distances.argmin(1)


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


def _check(row: Any) -> str | None:
    """Why a row is malformed, or ``None``."""
    if isinstance(row, Exception):
        return f"not JSON: {row}"
    if not isinstance(row, dict) or not isinstance(row.get("post_id"), str) or not row["post_id"]:
        return "no post_id string"
    if row.get("image") is None:
        return "no image"
    comments = row.get("comments")
    if comments is not None and (not isinstance(comments, list) or not all(isinstance(c, str) for c in comments)):
        return "comments must be a list of strings"
    reactions = row.get("reactions")
    if reactions is not None:
        if not isinstance(reactions, dict) or set(reactions) - set(REACTIONS):
            return f"reactions must be a mapping of {list(REACTIONS)}"
        if not all(isinstance(v, int) and v >= 0 for v in reactions.values() if v is not None):
            return "reaction counts must be non-negative integers"
    return None


def _posts(shard: Path, errors: list[dict]) -> Iterator[dict]:
    for number, row in _raw_rows(shard):
        problem = _check(row)
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


def _kmeans(points: np.ndarray, k: int, config: MiningConfig, backend: str) -> np.ndarray:
    """K-means centroids, ``(k, d)`` float32 (deterministic for a seed with either backend)."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    if backend == "faiss":
        import faiss

        # every point is used (max_points_per_centroid): faiss would otherwise subsample large sets
        model = faiss.Kmeans(points.shape[1], k, niter=config.kmeans_iterations, seed=config.seed, verbose=False,
                             max_points_per_centroid=len(points))  # fmt: skip
        model.train(points)
        return np.asarray(model.centroids, dtype=np.float32)
    return KMeans(k, n_init=1, random_state=config.seed).fit(points).cluster_centers_.astype(np.float32)


def fit_cluster_models(shards: Sequence[Path], config: MiningConfig) -> tuple[ClusterModels, dict[str, int]]:
    """Step 1 on the held-out posts of ``shards``: the comment embedding and both K-means."""
    comments: list[str] = []
    reactions: list[np.ndarray] = []
    posts = 0
    ignored: list[dict] = []
    for shard in shards:
        for row in _posts(shard, ignored):
            if not is_holdout(row["post_id"], config.holdout_fraction, config.seed):
                continue
            posts += 1
            comments += sample_comments(row.get("comments") or [], config.max_comments, row["post_id"], config.seed)
            vector = reaction_vector(row.get("reactions") or {})
            if vector is not None:
                reactions.append(vector)
    if len(comments) < 2 or len(reactions) < 2:
        raise ValueError(
            f"the held-out subset ({posts} posts, holdout_fraction={config.holdout_fraction}) has {len(comments)} "
            f"comments and {len(reactions)} posts with reactions; raise holdout_fraction or add data"
        )
    if config.comment_encoder:
        models = ClusterModels(vocabulary=[], idf=np.zeros(0), components=np.zeros((0, 0), dtype=np.float32),
                               comment_centroids=np.zeros((0, 0)), reaction_centroids=np.zeros((0, len(REACTIONS))),
                               settings=asdict(config))  # fmt: skip
        embedded = models.embed_comments(comments)
        dim = embedded.shape[1]
    else:
        tfidf = TfidfVectorizer(max_features=config.max_features, sublinear_tf=True)
        matrix = tfidf.fit_transform(comments)
        dim = max(1, min(config.embedding_dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
        svd = TruncatedSVD(n_components=dim, random_state=config.seed).fit(matrix)
        vocabulary = [None] * len(tfidf.vocabulary_)
        for word, index in tfidf.vocabulary_.items():
            vocabulary[index] = word
        models = ClusterModels(vocabulary=vocabulary, idf=tfidf.idf_.astype(np.float64),
                               components=svd.components_.astype(np.float32), comment_centroids=np.zeros((0, dim)),
                               reaction_centroids=np.zeros((0, len(REACTIONS))))  # fmt: skip
        embedded = models.embed_comments(comments)
    k_comments = min(config.comment_clusters, len(np.unique(embedded, axis=0)))
    k_reactions = min(config.reaction_clusters, len(np.unique(np.round(reactions, 6), axis=0)))
    backend = _kmeans_backend(config.kmeans_backend)
    models.comment_centroids = _kmeans(embedded, k_comments, config, backend)
    models.reaction_centroids = _kmeans(np.asarray(reactions, dtype=np.float32), k_reactions, config, backend)
    models.settings = {**asdict(config), "kmeans_backend_used": backend, "comment_clusters_fitted": k_comments,
                       "reaction_clusters_fitted": k_reactions, "embedding_dim_fitted": dim,
                       "key": config.key()}  # fmt: skip
    counts = {"holdout_posts": posts, "holdout_comments": len(comments), "holdout_reactions": len(reactions)}
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


def _image_reference(image: Any, shard: Path) -> dict[str, Any]:
    if isinstance(image, dict):  # parquet written by datasets: {"bytes", "path"}
        return {"bytes": image.get("bytes"), "path": image.get("path")}
    if isinstance(image, bytes):
        return {"bytes": image, "path": None}
    path = str(image)
    return {"bytes": None, "path": path if os.path.isabs(path) else str(shard.parent / path)}


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


def _label_shard(shard: str, clusters: str, output: str, config: MiningConfig) -> dict[str, Any]:
    """Label one shard into ``output`` (atomically); runs in a worker process."""
    models = ClusterModels.load(clusters)
    source = Path(shard)
    errors: list[dict] = []
    rows = []
    for row in _posts(source, errors):
        if is_holdout(row["post_id"], config.holdout_fraction, config.seed):
            continue
        sampled = sample_comments(row.get("comments") or [], config.max_comments, row["post_id"], config.seed)
        ids, weights = np.zeros(0, dtype=np.int64), np.zeros(0)
        if sampled:
            ids, counts = np.unique(models.assign_comments(sampled), return_counts=True)
            weights = counts / counts.sum()
        vector = reaction_vector(row.get("reactions") or {})
        reaction = int(models.assign_reactions(vector[None])[0]) if vector is not None else -1
        rows.append({"post_id": row["post_id"], "image": _image_reference(row["image"], source),
                     "comment_clusters": ids.astype(int).tolist(), "comment_weights": weights.astype(float).tolist(),
                     "reaction_cluster": reaction})  # fmt: skip
    if rows:
        table = datasets.Dataset.from_list(rows, features=label_features())
    else:
        table = datasets.Dataset.from_dict({k: [] for k in label_features()}, features=label_features())
    target = Path(output)
    # the shard's malformed rows first: a finished label shard always has its error list beside it
    atomic_write_text(target.with_suffix(".errors.jsonl"), "".join(json.dumps(e) + "\n" for e in errors))
    with atomic_open(target, "wb") as handle:
        table.to_parquet(handle, batch_size=1000)  # explicit: no size estimate that stats every image file
    record = {"key": config.key(), "rows": len(rows), "bytes": target.stat().st_size, "sha256": _digest(target)}
    atomic_write_text(_record_path(target), json.dumps(record))  # last: the shard counts as finished from here
    no_comments = sum(1 for r in rows if not r["comment_clusters"])
    no_reactions = sum(1 for r in rows if r["reaction_cluster"] < 0)
    return {"shard": source.name, "posts": len(rows), "no_comments": no_comments, "no_reactions": no_reactions,
            "errors": errors}  # fmt: skip


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
    corpus: str | os.PathLike, output_dir: str | os.PathLike, config: MiningConfig | None = None, num_proc: int = 1
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
    config = config or MiningConfig()
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
            with ProcessPoolExecutor(max_workers=num_proc) as pool:
                results = list(pool.map(_label_shard, *zip(*args, strict=True)))
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


def _reusable_clusters(clusters: Path, output: Path, config: MiningConfig) -> bool:
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


def _report(output: Path, targets: Mapping[Path, Path], config: MiningConfig, holdout, results, errors) -> dict:
    models = ClusterModels.load(output / "clusters")
    labels = datasets.load_dataset("parquet", data_files=[str(t) for t in targets.values()], split="train")
    comment_sizes = np.zeros(len(models.comment_centroids))
    for ids, weights in zip(labels["comment_clusters"], labels["comment_weights"], strict=True):
        np.add.at(comment_sizes, np.asarray(ids, dtype=int), np.asarray(weights) > 0)
    reactions = np.asarray(labels["reaction_cluster"])
    reaction_sizes = np.bincount(reactions[reactions >= 0], minlength=len(models.reaction_centroids))
    return {
        "settings": models.settings,
        "holdout": holdout,
        "posts_labelled": len(labels),
        "posts_without_comments": int(sum(1 for ids in labels["comment_clusters"] if len(ids) == 0)),
        "posts_without_reactions": int((reactions < 0).sum()),
        "malformed_rows": len(errors),
        "malformed_examples": errors[:20],
        "shards_labelled_this_run": [r["shard"] for r in results],
        "comment_cluster_sizes": _size_statistics(comment_sizes),
        "reaction_cluster_sizes": _size_statistics(reaction_sizes.astype(float)),
    }
