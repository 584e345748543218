"""Engagement data for VisE: posts with an image, comment strings and counts of the five reactions.

There is no public release (FORMATS.md), so this module defines the schema: a ``datasets`` one
that streams, from jsonl or parquet shards::

    {"post_id": "p000123", "image": "images/p000123.png",          # a path (relative to the shard) or bytes
     "comments": ["so cute!", "look at those eyes"],               # any number, possibly none
     "reactions": {"haha": 3, "sorry": 0, "angry": 0, "wow": 1, "love": 12}}

:func:`make_demo_engagement` writes a deterministic corpus in that layout whose comments and
reactions depend on what the image shows (a theme: its background colour and shape), so that a
network pretrained on the mined pseudo-labels learns something measurable.

Examples:
    >>> import tempfile
    >>> root = make_demo_engagement(tempfile.mkdtemp(), n_posts=12, n_shards=2, seed=0)
    >>> posts = load_engagement(root)
    >>> sorted(next(iter(posts)))
    ['comments', 'image', 'post_id', 'reactions']
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, ImageDraw

from hf_memotion.folder_safety import check_data_name
from hf_memotion.io_utils import atomic_write_bytes, atomic_write_text

__all__ = [
    "REACTIONS",
    "DemoEngagementSpec",
    "engagement_features",
    "engagement_shards",
    "load_engagement",
    "make_demo_engagement",
    "resolve_corpus",
]

#: The five reaction buttons, in the order of every reaction vector.
REACTIONS = ("haha", "sorry", "angry", "wow", "love")
_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def engagement_features() -> datasets.Features:
    """The schema of a post: ``post_id``, ``image`` (``datasets.Image``), ``comments``, ``reactions``."""
    return datasets.Features(
        {
            "post_id": datasets.Value("string"),
            "image": datasets.Image(),
            "comments": datasets.Sequence(datasets.Value("string")),
            "reactions": {name: datasets.Value("int64") for name in REACTIONS},
        }
    )


def engagement_shards(path: str | os.PathLike) -> list[Path]:
    """The data shards of a corpus: a shard file, or every jsonl/parquet file of a folder (sorted)."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no engagement data at {root}: pass a folder of jsonl/parquet shards or one shard")
    shards = sorted(p for p in root.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith("."))
    if not shards:
        raise FileNotFoundError(f"{root} holds no .jsonl or .parquet shard")
    if len({p.suffix for p in shards}) > 1:
        raise ValueError(f"{root} mixes shard formats {sorted({p.suffix for p in shards})}: use one")
    return shards


def load_engagement(path: str | os.PathLike, *, streaming: bool = True) -> datasets.IterableDataset | datasets.Dataset:
    """Stream (or load) engagement posts with :func:`engagement_features`.

    Images come as references (``{"path", "bytes"}``, ``datasets.Image(decode=False)``): mining never
    looks at pixels, and pretraining decodes them with :func:`hf_memotion.data.load_rgb_image`, the
    library's one checked decoder of untrusted images.

    Args:
        path: A folder of ``.jsonl`` or ``.parquet`` shards, or one shard. Image paths in jsonl are
            relative to the shard's folder.
        streaming: Return an ``IterableDataset`` (memory stays flat whatever the corpus size).
    """
    shards = engagement_shards(path)
    features = engagement_features()
    features["image"] = datasets.Image(decode=False)
    files = [str(s) for s in shards]
    if _SUFFIXES[shards[0].suffix] == "parquet":
        return datasets.load_dataset("parquet", data_files=files, split="train", streaming=streaming, features=features)
    raw = datasets.Features({**features, "image": datasets.Value("string")})
    data = datasets.load_dataset("json", data_files=files, split="train", streaming=streaming, features=raw)
    base = str(shards[0].parent)

    def reference(row):  # jsonl holds paths relative to the shard's folder, never outside it
        image = row["image"]
        path = None if image is None else os.path.join(base, check_data_name(image, f"post {row.get('post_id')}", base))
        return {"image": {"path": path, "bytes": None}}

    return data.map(reference, features=features)


# ---------------------------------------------------------------------------------------------
# Demo corpus
# ---------------------------------------------------------------------------------------------

_THEMES = (  # what the image shows -> what people write and press (haha, sorry, angry, wow, love)
    {
        "colour": (230, 80, 60),
        "shape": "circle",
        "words": "fire hot burning danger scary wow",
        "react": (1, 2, 6, 5, 1),
    },
    {
        "colour": (70, 150, 230),
        "shape": "square",
        "words": "sea calm blue beautiful peace love",
        "react": (1, 0, 0, 3, 9),
    },
    {"colour": (90, 200, 90), "shape": "triangle", "words": "forest green hike fresh nature", "react": (1, 0, 0, 4, 7)},
    {"colour": (240, 220, 60), "shape": "circle", "words": "sun lol funny haha joke silly", "react": (10, 0, 1, 2, 3)},
    {"colour": (120, 120, 120), "shape": "square", "words": "rain sad sorry grey miss loss", "react": (0, 9, 2, 1, 2)},
    {
        "colour": (160, 80, 200),
        "shape": "triangle",
        "words": "party night music dance amazing",
        "react": (4, 0, 0, 6, 5),
    },
)
_FILLER = ["the", "a", "this", "that", "so", "really", "just", "very", "my", "your", "what", "look", "at"]


@dataclass(frozen=True)
class DemoEngagementSpec:
    """Settings of the demo corpus.

    Attributes:
        n_posts: Posts in all.
        n_shards: jsonl shards the posts are split into.
        seed: Everything is drawn from this seed.
        image_size: Side of the square images.
        max_comments: Most comments on one post (some posts have none).
        signal: Probability that a comment word, or a reaction, follows the image's theme.
        write_images: Write the image files (``False``: reference them only, for mining benchmarks, which never
            read pixels; the posts then differ from a corpus with images).
    """

    n_posts: int = 2000
    n_shards: int = 4
    seed: int = 0
    image_size: int = 64
    max_comments: int = 12
    signal: float = 0.8
    write_images: bool = True


def _image(theme: dict, rng: np.random.Generator, size: int) -> bytes:
    base = np.clip(np.array(theme["colour"]) + rng.normal(0, 18, 3), 0, 255)
    pixels = np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    r = int(size * rng.uniform(0.2, 0.32))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    box = (cx - r, cy - r, cx + r, cy + r)
    fill = (255, 255, 255) if rng.random() < 0.5 else (20, 20, 20)
    if theme["shape"] == "circle":
        draw.ellipse(box, fill=fill)
    elif theme["shape"] == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _comment(theme: dict, rng: np.random.Generator, signal: float) -> str:
    own = theme["words"].split()
    words = []
    for _ in range(int(rng.integers(2, 7))):
        pool = own if rng.random() < signal else _THEMES[int(rng.integers(len(_THEMES)))]["words"].split() + _FILLER
        words.append(str(rng.choice(pool)))
    return " ".join(words)


def _reactions(theme: dict, rng: np.random.Generator, signal: float) -> dict[str, int]:
    if rng.random() < 0.05:
        return dict.fromkeys(REACTIONS, 0)  # no reactions at all: a documented case for mining
    profile = np.array(theme["react"], dtype=float) if rng.random() < signal else rng.uniform(0, 5, len(REACTIONS))
    scale = rng.lognormal(1.5, 1.0)  # popularity differs a lot; mining L2-normalises it away
    return {name: int(v) for name, v in zip(REACTIONS, rng.poisson(profile * scale), strict=True)}


def make_demo_engagement(output_dir: str | os.PathLike, *, overwrite: bool = False, **settings) -> Path:
    """Write the demo engagement corpus (``images/`` and ``posts-XXXXX.jsonl`` shards) and return its folder.

    An existing corpus made with the same settings is reused; anything else in the folder is an error
    unless ``overwrite``. Each post's theme (hidden) decides its image, most of its comment words and
    its reaction profile; 3% of posts have no comments and 5% no reactions.
    """
    config = DemoEngagementSpec(**settings)
    root = Path(output_dir)
    marker = root / ".demo_engagement"
    stamp = repr(config)
    if marker.is_file() and marker.read_text() == stamp and not overwrite:
        return root
    if root.exists() and any(root.iterdir()) and not overwrite and not marker.is_file():
        raise FileExistsError(f"{root} exists and is not a demo engagement corpus; choose another folder")
    rng = np.random.default_rng(config.seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    per_shard = -(-config.n_posts // config.n_shards)
    for shard in range(config.n_shards):
        lines = []
        for index in range(shard * per_shard, min(config.n_posts, (shard + 1) * per_shard)):
            theme = _THEMES[int(rng.integers(len(_THEMES)))]
            post_id = f"p{index:07d}"
            if config.write_images:
                atomic_write_bytes(root / "images" / f"{post_id}.png", _image(theme, rng, config.image_size))
            n_comments = 0 if rng.random() < 0.03 else int(rng.integers(1, config.max_comments + 1))
            comments = [_comment(theme, rng, config.signal) for _ in range(n_comments)]
            post = {
                "post_id": post_id,
                "image": f"images/{post_id}.png",
                "comments": comments,
                "reactions": _reactions(theme, rng, config.signal),
            }
            lines.append(json.dumps(post))
        atomic_write_text(root / f"posts-{shard:05d}.jsonl", "\n".join(lines) + "\n")
    atomic_write_text(marker, stamp)
    return root


def resolve_corpus(section: Mapping[str, Any] | None) -> str | Path:
    """The corpus a config's ``data`` section names: ``path`` (a folder of shards) or ``demo``.

    ``demo`` holds settings of :func:`make_demo_engagement`, written to its ``output_dir`` (or reused when there).

    Examples:
        >>> resolve_corpus({"path": "/data/posts"})
        '/data/posts'
    """
    data = {k: v for k, v in (section or {}).items() if v is not None}
    if ("path" in data) == ("demo" in data):
        raise ValueError("the data section takes 'path' (a folder of jsonl/parquet shards) or 'demo' (settings)")
    if "path" in data:
        return data["path"]
    demo = dict(data["demo"] or {})
    return make_demo_engagement(demo.pop("output_dir", "outputs/vise_engagement_demo"), **demo)
