"""Step 1's result: phi_C and both sets of K-means centroids, and how a post's comments and reactions find them.

Saved as plain arrays (``clusters/clusters.npz``) and settings (``clusters.json``): no pickle on disk. Both
mining engines label posts through :class:`ClusterModels` (:func:`~hf_memotion.vise.mining_steps.label_posts`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from hf_memotion.io_utils import atomic_open, atomic_write_text
from hf_memotion.vise.centroid_search import CentroidSearch, Method
from hf_memotion.vise.comment_embedding import CommentEmbedding

__all__ = [
    "ClusterModels",
    "MiningArtifactError",
]

logger = logging.getLogger(__name__)


class MiningArtifactError(RuntimeError):
    """A file of a mining output folder is damaged; the message names it."""


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
    _encoder: Any = field(default=None, repr=False)  # the comment_encoder (a TextEncoder), loaded once
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

    def _encode(self, comments: Sequence[str]) -> np.ndarray:
        """The ``comment_encoder``'s sentence embeddings (loaded once; :class:`TextEncoder`)."""
        if self._encoder is None:
            from hf_memotion.vise.text_encoder import TextEncoder

            length = int(self.settings.get("encoder_max_length", 64))
            device = self.settings.get("encoder_device", "cpu")
            self._encoder = TextEncoder(self.settings["comment_encoder"], max_length=length, device=device)
        return self._encoder.encode(comments)

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
