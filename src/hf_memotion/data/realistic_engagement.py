"""A synthetic engagement corpus with the statistics of real comments, for benchmarks and engine tests.

The demo corpus (:func:`~hf_memotion.data.engagement.make_demo_engagement`) has a vocabulary of a few dozen words:
enough to show that pretraining learns, far too small to measure mining. This generator writes posts in the same
schema whose comments look like social-media text at scale:

- a vocabulary of ``vocabulary_size`` made-up words (default 100,000) drawn with Zipf frequencies (exponent 1.1)
  as background, and ``n_topics`` latent topics, each with its own Zipf-ranked subset of words and of emoji; a
  post has a main topic (its comments mostly speak of it) and reactions drawn from the topic's profile;
- comments per post from a heavy-tailed (negative binomial) law with mean ``comments_per_post`` (the paper's
  corpus: 20.25 ± 54.43), lengths from a geometric law;
- emoji inside comments, emoji-only comments, typos (a letter dropped or doubled: out-of-vocabulary words),
  gibberish comments that share no token with anything, posts without comments or reactions, and reaction maps
  with an extra ``like`` key (as real exports carry).

Shards are jsonl (image paths, not written) or parquet (``image_bytes=True``: tiny PNGs embedded, as a Hub dataset
carries them). Deterministic for a seed.

Examples:
    >>> import tempfile
    >>> root = make_realistic_engagement(tempfile.mkdtemp(), n_posts=40, vocabulary_size=500, seed=0)
    >>> import json
    >>> post = json.loads((root / "posts-00000.jsonl").read_text().splitlines()[0])
    >>> sorted(post)
    ['comments', 'image', 'post_id', 'reactions']
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hf_memotion.data.engagement import REACTIONS
from hf_memotion.io_utils import atomic_open, atomic_write_text

__all__ = ["EMOJI", "make_realistic_engagement", "realistic_comments"]

#: The emoji the generator draws from (topics prefer a few each).
EMOJI = tuple("😂🤣😍❤🔥😭😱😡👍👏🙏😢😮🥰💯🤔😅😎🎉💀🙄😴🤮🐶🐱🌊🌅⚽🍕🎶")
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["ka", "zo", "qu", "xe", "yi", "th", "sh"]


@dataclass(frozen=True)
class _Topics:
    words: np.ndarray  # (n_topics, topic_words) word ids, Zipf-ranked
    emoji: np.ndarray  # (n_topics, 4) emoji ids
    reactions: np.ndarray  # (n_topics, 5) reaction profile


def _vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    words, seen = [], set()
    while len(words) < size:
        parts = rng.integers(len(_SYLLABLES), size=int(rng.integers(2, 5)))
        word = "".join(_SYLLABLES[p] for p in parts)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _zipf_probabilities(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _typo(word: str, rng: np.random.Generator) -> str:
    position = int(rng.integers(len(word)))
    if rng.random() < 0.5:
        return word[:position] + word[position + 1 :] if len(word) > 3 else word + word[-1]
    return word[:position] + word[position] * 2 + word[position + 1 :]


class _Sampler:
    """Zipf draws by inverse CDF (one ``searchsorted`` per batch: ``rng.choice`` with probabilities is O(V) a call)."""

    def __init__(self, n: int, exponent: float):
        self.cdf = np.cumsum(_zipf_probabilities(n, exponent))

    def __call__(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, rng.random(size)), len(self.cdf) - 1)


def realistic_comments(
    n: int,
    topics: np.ndarray,
    *,
    vocabulary: list[str],
    topic_table: _Topics,
    rng: np.random.Generator,
    mean_length: float = 8.0,
    emoji_rate: float = 0.3,
    emoji_only_rate: float = 0.05,
    typo_rate: float = 0.02,
    gibberish_rate: float = 0.01,
) -> list[str]:
    """``n`` comments about the given topics (one per comment)."""
    background, topic_rank = _Sampler(len(vocabulary), 1.1), _Sampler(topic_table.words.shape[1], 1.0)
    lengths = np.minimum(rng.geometric(1.0 / mean_length, size=n), 60)
    total = int(lengths.sum())
    owner = np.repeat(np.asarray(topics, dtype=np.int64), lengths)
    ids = np.where(rng.random(total) < 0.5, topic_table.words[owner, topic_rank(rng, total)], background(rng, total))
    typos = np.flatnonzero(rng.random(total) < typo_rate)
    words = [vocabulary[i] for i in ids]
    for position in typos:
        words[position] = _typo(words[position], rng)
    kinds = rng.random(n)
    emoji_counts = rng.integers(1, 4, size=n)
    with_emoji = rng.random(n) < emoji_rate
    out, start = [], 0
    for number in range(n):
        length, topic, kind = int(lengths[number]), int(topics[number]), kinds[number]
        comment_words = words[start : start + length]
        start += length
        if kind < gibberish_rate:
            out.append("".join(rng.choice(list("qxzjvkw"), size=int(rng.integers(4, 12)))))
            continue
        emoji = "".join(EMOJI[e] for e in rng.choice(topic_table.emoji[topic], size=int(emoji_counts[number])))
        if kind < gibberish_rate + emoji_only_rate:
            out.append(emoji)
            continue
        if with_emoji[number]:
            comment_words = [*comment_words]
            comment_words.insert(int(rng.integers(len(comment_words) + 1)), emoji)
        out.append(" ".join(comment_words))
    return out


def _png(rng: np.random.Generator) -> bytes:
    from PIL import Image

    image = Image.fromarray(rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_realistic_engagement(
    output_dir: str | os.PathLike,
    *,
    n_posts: int = 5000,
    n_shards: int = 4,
    vocabulary_size: int = 100_000,
    n_topics: int = 64,
    comments_per_post: float = 20.0,
    seed: int = 0,
    image_bytes: bool = False,
) -> Path:
    """Write a realistic synthetic corpus (jsonl shards, or parquet with embedded images) and return its folder.

    Args:
        output_dir: Target folder (created).
        n_posts: Posts in all.
        n_shards: Shard files.
        vocabulary_size: Distinct words of the background vocabulary.
        n_topics: Latent topics (what the comment clusters can find).
        comments_per_post: Mean comments per post (heavy-tailed).
        seed: Seed of everything.
        image_bytes: Parquet shards with tiny PNGs embedded (``{"bytes", "path"}``), instead of jsonl paths.
    """
    rng = np.random.default_rng(seed)
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    vocabulary = _vocabulary(vocabulary_size, rng)
    table = _Topics(
        words=np.stack(
            [rng.choice(vocabulary_size, size=min(2000, vocabulary_size), replace=False) for _ in range(n_topics)]
        ),
        emoji=rng.integers(len(EMOJI), size=(n_topics, 4)),
        reactions=rng.dirichlet(np.full(len(REACTIONS), 0.5), size=n_topics),
    )
    per_shard = np.array_split(np.arange(n_posts), n_shards)
    for shard, numbers in enumerate(per_shard):
        posts = []
        for number in numbers:
            topic = int(rng.integers(n_topics))
            count = int(min(rng.negative_binomial(0.6, 0.6 / (0.6 + comments_per_post)), 500))
            topics = np.where(rng.random(count) < 0.8, topic, rng.integers(n_topics, size=count))
            comments = realistic_comments(count, topics, vocabulary=vocabulary, topic_table=table, rng=rng)
            reactions = None
            if rng.random() > 0.1:
                total = int(rng.lognormal(3.5, 1.2))
                counts = rng.multinomial(total, table.reactions[topic])
                reactions = {name: int(c) for name, c in zip(REACTIONS, counts, strict=True)}
                if rng.random() < 0.2:
                    reactions["like"] = int(rng.integers(0, 500))
            post_id = f"p{seed:03d}{number:09d}"
            image = {"bytes": _png(rng), "path": None} if image_bytes else f"images/{post_id}.jpg"
            posts.append({"post_id": post_id, "image": image, "comments": comments, "reactions": reactions})
        if image_bytes:
            import pyarrow as pa
            import pyarrow.parquet as pq

            reaction_type = pa.struct([(name, pa.int64()) for name in (*REACTIONS, "like")])
            schema = pa.schema(
                [
                    ("post_id", pa.string()),
                    ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                    ("comments", pa.list_(pa.string())),
                    ("reactions", reaction_type),
                ]
            )
            with atomic_open(root / f"posts-{shard:05d}.parquet", "wb") as handle:
                pq.write_table(pa.Table.from_pylist(posts, schema=schema), handle)
        else:
            text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts)
            atomic_write_text(root / f"posts-{shard:05d}.jsonl", text)
    return root
