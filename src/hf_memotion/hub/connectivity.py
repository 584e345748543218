"""Whether the Hugging Face Hub can be reached, and going offline at once when it cannot.

Without a network the Hub libraries retry each request with growing waits before they fall back on the cache (about
20 s per file, minutes for a run that names several models). :func:`offline_if_unreachable` opens one TCP
connection to the Hub's endpoint (at most ``timeout`` seconds, once per process); when that fails it logs one INFO
line and turns on the Hub libraries' offline mode for the rest of the process, as ``HF_HUB_OFFLINE=1`` would:
files then come from the local cache or fail at once. It never turns offline mode off, and it checks nothing when
``HF_HUB_OFFLINE`` is already set (set it yourself to skip the check) or when a proxy is configured
(``HTTPS_PROXY`` and the like: the Hub may then be reachable only through it).

Examples:
    >>> from unittest import mock
    >>> with mock.patch.dict("os.environ", {"HF_HUB_OFFLINE": "1"}):
    ...     offline_if_unreachable()  # already offline: nothing is checked
    True
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from urllib.parse import urlparse

__all__ = ["hub_endpoint", "offline_if_unreachable"]

logger = logging.getLogger(__name__)

_TRUE = {"1", "ON", "YES", "TRUE"}
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
#: Per endpoint: whether the last check found it unreachable (one check, and one line, per process).
_CHECKED: dict[str, bool] = {}


def hub_endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT``, else ``https://huggingface.co``."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _offline_already() -> bool:
    if any(os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(constants is not None and constants.HF_HUB_OFFLINE)


def _reason_unreachable(endpoint: str, timeout: float) -> str | None:
    """``None`` when a TCP connection to the endpoint opens within ``timeout`` seconds, else why not."""
    parsed = urlparse(endpoint)
    host = parsed.hostname or endpoint
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _go_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # for libraries imported later and for child processes
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True  # what is_offline_mode() reads (transformers, timm)
    datasets_config = sys.modules.get("datasets.config")  # datasets copies the flag when it is imported
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = datasets_config.HF_DATASETS_OFFLINE = True


def offline_if_unreachable(timeout: float = 2.0) -> bool:
    """Turn on the Hub's offline mode for this process when the Hub cannot be reached; whether it is offline.

    Call it before code that may download (this library does, before it loads a Hub id). Costs one TCP connection
    the first time (at most ``timeout`` seconds), nothing after.

    Args:
        timeout: Seconds to wait for the connection.
    """
    if _offline_already():
        return True
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return False  # a direct connection says nothing about the path through the proxy
    endpoint = hub_endpoint()
    if endpoint not in _CHECKED:
        reason = _reason_unreachable(endpoint, timeout)
        _CHECKED[endpoint] = reason is not None
        if reason is not None:
            logger.info(
                "the Hugging Face Hub (%s) cannot be reached (%s): Hub files come from the local cache only "
                "(HF_HUB_OFFLINE=1 skips this check)",
                endpoint,
                reason,
            )
    if _CHECKED[endpoint]:
        _go_offline()
    return _CHECKED[endpoint]
