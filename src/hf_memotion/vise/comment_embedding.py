"""phi_C, the comment embedding of VisE mining: one definition for the local engine and for Spark.

The paper clusters comments by "TF-IDF weighted document embeddings" (Section 3.1). Without downloadable word
vectors the word space is learned from the held-out comments: a comment's TF-IDF vector (sublinear term
frequency, smoothed IDF, L2-normalised) is projected on a truncated SVD of the held-out TF-IDF matrix (latent
semantic analysis) and L2-normalised, i.e. it is the TF-IDF weighted sum of its words' SVD embeddings.

- **Tokens**: lower-cased words of two or more word characters, and every emoji or other non-ASCII symbol
  (Unicode categories ``So``, ``Sk``, ``Sm``, ``Sc``) as a token of its own, so that "😂😂" or "❤️" carry signal
  (variation selectors and joiners are dropped). ASCII punctuation is not a token.
- **Fit** once, on the held-out comments (at most ``fit_sample`` of them, chosen by a hash of the post id and the
  comment's position, so both engines pick the same ones and sort them the same way): vocabulary (the
  ``max_features`` most frequent tokens), IDF, and the SVD components. scikit-learn's ``TfidfVectorizer`` and
  ``TruncatedSVD`` do the fitting.
- **Apply** anywhere (a Spark executor receives the arrays): :meth:`CommentEmbedding.transform` builds the sparse
  TF-IDF matrix of a batch and multiplies it by the float32 projection once, ``O(non-zeros x dim)``, without
  densifying or copying the projection.
- **No comment signal**: a comment with no known token has a zero TF-IDF vector, hence no direction. It gets no
  cluster (:meth:`CommentEmbedding.transform` returns a zero row and ``has_signal`` says so); its post's comment
  target is built from the other comments, and is empty when none has signal (as a post without comments). Both
  engines count such comments in their reports.

Examples:
    >>> tokenize("LOL this is SO cute 😂😂 ❤️!!")
    ['lol', 'this', 'is', 'so', 'cute', '😂', '😂', '❤']
    >>> embedding = CommentEmbedding.fit(["cute cat 😂", "cute dog", "scary storm", "storm at sea 😱"], dim=2)
    >>> vectors = embedding.transform(["cute 😂", "zzzz"])
    >>> vectors.shape, embedding.has_signal(vectors).tolist()
    ((2, 2), [True, False])
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import sparse

__all__ = ["CommentEmbedding", "fit_sample_rank", "tokenize"]

# words of 2+ word characters, or one non-ASCII character that is neither a word character nor a space (an emoji, a
# symbol, or a mark such as a variation selector: those are dropped by _is_symbol)
_TOKENS = re.compile(r"\w\w+|[^\x00-\x7f\w\s]")


@lru_cache(maxsize=65536)
def _is_symbol(character: str) -> bool:
    return unicodedata.category(character)[0] == "S"


def _tokens(lowered: str) -> list[str]:
    found = _TOKENS.findall(lowered)
    if any(len(t) == 1 for t in found):
        return [t for t in found if len(t) > 1 or _is_symbol(t)]
    return found


def tokenize(text: str) -> list[str]:
    """Lower-cased words of 2+ word characters, and each emoji or non-ASCII symbol as its own token."""
    return _tokens(text.lower())


def fit_sample_rank(seed: int, post_id: str, position: int) -> float:
    """A comment's place in the fitting sample's order, in [0, 1): the sample is the comments of lowest rank.

    A hash of the post id and the comment's position among the post's sampled comments: the same in every
    process and engine.
    """
    digest = hashlib.sha256(f"{seed}:fit:{post_id}:{position}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class CommentEmbedding:
    """A fitted phi_C: ``vocabulary``, ``idf`` (float32) and the projection ``components`` (``dim x V`` float32).

    Attributes:
        vocabulary: Token of each TF-IDF column.
        idf: Inverse document frequency of each column (scikit-learn's smoothed formula).
        components: The truncated SVD's components, ``(dim, len(vocabulary))``.
    """

    vocabulary: list[str]
    idf: np.ndarray
    components: np.ndarray

    def __post_init__(self) -> None:
        self.idf = np.ascontiguousarray(self.idf, dtype=np.float32)
        self.components = np.asarray(self.components, dtype=np.float32)
        # (V, dim), contiguous float32, made once: the sparse product reads it row by row, never copies it
        self._projection = np.ascontiguousarray(self.components.T)
        self._index = {token: i for i, token in enumerate(self.vocabulary)}

    @property
    def dim(self) -> int:
        """Width of phi_C."""
        return int(self.components.shape[0])

    @classmethod
    def fit(
        cls, comments: Sequence[str], *, dim: int = 256, max_features: int = 100_000, seed: int = 0
    ) -> CommentEmbedding:
        """Fit the vocabulary, IDF and projection on ``comments`` (the held-out sample, in its canonical order)."""
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(
            tokenizer=tokenize,
            lowercase=False,
            token_pattern=None,
            max_features=max_features,
            sublinear_tf=True,
            dtype=np.float32,
        )
        try:
            matrix = vectorizer.fit_transform(comments)
        except ValueError:  # nothing but unknown characters: "empty vocabulary"
            raise ValueError(
                f"the {len(comments)} held-out comments hold no word or emoji token: add data or raise holdout_fraction"
            ) from None
        width = max(1, min(dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
        svd = TruncatedSVD(n_components=width, random_state=seed).fit(matrix)
        vocabulary = [""] * len(vectorizer.vocabulary_)
        for token, index in vectorizer.vocabulary_.items():
            vocabulary[index] = token
        return cls(vocabulary, vectorizer.idf_, svd.components_)

    def tfidf(self, comments: Iterable[str]) -> sparse.csr_matrix:
        """The comments' TF-IDF rows (sublinear term frequency, IDF, L2-normalised), float32 CSR.

        Python only splits and looks tokens up; counting and the CSR layout are numpy. Characters the fit dropped
        (marks such as variation selectors) are not in the vocabulary, so no filter is needed here.
        """
        token_lists = [_TOKENS.findall(comment.lower()) for comment in comments]
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        tokens = itertools.chain.from_iterable(token_lists)
        columns = np.fromiter(
            map(self._index.get, tokens, itertools.repeat(-1)), dtype=np.int64, count=int(lengths.sum())
        )
        rows = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
        known = columns >= 0
        keys, counts = np.unique(rows[known] * len(self.vocabulary) + columns[known], return_counts=True)
        rows, columns = keys // len(self.vocabulary), keys % len(self.vocabulary)
        values = (1.0 + np.log(counts.astype(np.float32))) * self.idf[columns]
        indptr = np.zeros(len(token_lists) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(token_lists)), out=indptr[1:])
        matrix = sparse.csr_matrix(
            (values.astype(np.float32), columns.astype(np.int32), indptr),
            shape=(len(token_lists), len(self.vocabulary)),
        )
        norms = np.sqrt(np.bincount(rows, weights=values.astype(np.float64) ** 2, minlength=len(token_lists)))
        matrix.data /= np.repeat(np.maximum(norms, 1e-12), np.diff(indptr)).astype(np.float32)
        return matrix

    def transform(self, comments: Iterable[str]) -> np.ndarray:
        """phi_C of each comment, ``(n, dim)`` float32, L2-normalised; a zero row where no token is known."""
        return self.project(self.tfidf(comments))

    def project(self, tfidf: sparse.csr_matrix) -> np.ndarray:
        """phi_C of TF-IDF rows (:meth:`tfidf`'s): one sparse product with the projection, then L2-normalised."""
        projected = np.asarray(tfidf @ self._projection, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", projected, projected))
        projected /= np.maximum(norms, 1e-12)[:, None]  # in place: no second (n, dim) array
        return projected

    @staticmethod
    def has_signal(vectors: np.ndarray) -> np.ndarray:
        """Rows of :meth:`transform` that have a direction (a known token)."""
        return np.asarray(vectors).any(axis=1)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save or broadcast (the vocabulary goes beside them as text)."""
        return {"idf": self.idf, "components": self.components}
