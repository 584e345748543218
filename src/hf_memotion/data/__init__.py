"""Data: the Memotion loader, the demo generator, image decoding and label statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

__all__ = [
    "DemoDataSpec",
    "ImageDecodeError",
    "MemotionFormatError",
    "describe_data_source",
    "format_statistics",
    "label_counts",
    "load_data",
    "load_memotion",
    "load_rgb_image",
    "make_demo_data",
    "memotion_features",
    "read_answer_file",
    "write_answer_file",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DemoDataSpec": "hf_memotion.data.demo",
        "make_demo_data": "hf_memotion.data.demo",
        "ImageDecodeError": "hf_memotion.data.images",
        "load_rgb_image": "hf_memotion.data.images",
        "load_data": "hf_memotion.data.loading",
        "MemotionFormatError": "hf_memotion.data.memotion",
        "describe_data_source": "hf_memotion.data.memotion",
        "load_memotion": "hf_memotion.data.memotion",
        "memotion_features": "hf_memotion.data.memotion",
        "read_answer_file": "hf_memotion.data.memotion",
        "write_answer_file": "hf_memotion.data.memotion",
        "format_statistics": "hf_memotion.data.statistics",
        "label_counts": "hf_memotion.data.statistics",
    },
)

if TYPE_CHECKING:
    from hf_memotion.data.demo import DemoDataSpec, make_demo_data
    from hf_memotion.data.images import ImageDecodeError, load_rgb_image
    from hf_memotion.data.loading import load_data
    from hf_memotion.data.memotion import (
        MemotionFormatError,
        describe_data_source,
        load_memotion,
        memotion_features,
        read_answer_file,
        write_answer_file,
    )
    from hf_memotion.data.statistics import format_statistics, label_counts
