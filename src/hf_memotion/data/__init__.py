"""Data: the Memotion loader, the demo generator, image decoding and label statistics."""

from hf_memotion.data.demo import DemoDataSpec, make_demo_data
from hf_memotion.data.images import ImageDecodeError, load_rgb_image
from hf_memotion.data.memotion import (
    MemotionFormatError,
    describe_data_source,
    load_memotion,
    memotion_features,
    read_answer_file,
    write_answer_file,
)
from hf_memotion.data.statistics import format_statistics, label_counts

__all__ = [
    "DemoDataSpec",
    "ImageDecodeError",
    "MemotionFormatError",
    "describe_data_source",
    "format_statistics",
    "label_counts",
    "load_memotion",
    "load_rgb_image",
    "make_demo_data",
    "memotion_features",
    "read_answer_file",
    "write_answer_file",
]
