"""How the scripts log: one format, a level from the environment, quiet third-party chatter, calm bars in files.

Examples:
    >>> from unittest import mock
    >>> with mock.patch.dict("os.environ", {"HF_MEMOTION_LOG_LEVEL": "debug"}):
    ...     logging.getLevelName(log_level())
    'DEBUG'
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["calm_progress_bars", "configure_logging", "log_level"]

#: Loggers of other libraries that say, at INFO, things that read as errors but are not.
QUIET_LOGGERS = {
    # faiss tries its AVX512 build, then its AVX2 build, then the generic one, and logs each miss at INFO
    # ("Could not load library with AVX2 support"): the search runs either way.
    "faiss.loader": logging.WARNING,
}
#: Seconds between redraws of a progress bar whose output is not a terminal (a log file, CI).
FILE_BAR_INTERVAL = "10"


def log_level() -> int:
    """The level the scripts log at: ``HF_MEMOTION_LOG_LEVEL`` (a name such as ``DEBUG``), else INFO.

    Raises:
        ValueError: For a name :mod:`logging` does not know.
    """
    name = os.environ.get("HF_MEMOTION_LOG_LEVEL", "INFO").strip().upper()
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise ValueError(f"HF_MEMOTION_LOG_LEVEL={name!r} is not a logging level: use DEBUG, INFO, WARNING or ERROR")
    return level


def configure_logging() -> None:
    """Set up logging for a script: the library's lines at :func:`log_level`, other libraries' noise quieted.

    Per-epoch metrics are DEBUG lines (``HF_MEMOTION_LOG_LEVEL=DEBUG`` shows them). transformers' own bars
    ("Loading weights", "Writing model shards": one per model read or written, many per run) are turned off;
    the training bars (one per training, named after it) and the Hub's download bars stay.
    """
    from transformers.utils import logging as transformers_logging

    logging.basicConfig(level=log_level(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    transformers_logging.disable_progress_bar()


def calm_progress_bars() -> None:
    """When standard error is not a terminal, progress bars redraw every :data:`FILE_BAR_INTERVAL` seconds.

    Ten redraws a second are right on a terminal, where each replaces the last; in a log file (CI, ``nohup``) each
    is kept, thousands per run. This sets ``TQDM_MININTERVAL`` unless the user set it; tqdm reads it when it is
    first imported, so the scripts call this before anything imports tqdm (:mod:`hf_memotion.cli` does on import).
    Notebooks are left alone: the library itself never calls it.
    """
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", FILE_BAR_INTERVAL)
