"""Whether the Hugging Face Hub can be reached, and going offline at once when it cannot.

Without a network the Hub libraries retry each request with growing waits before they fall back on the cache (about
20 s per file, minutes for a run that names several models). :func:`offline_if_unreachable` opens one TCP
connection to the Hub's endpoint (at most ``timeout`` seconds, once per process); when that fails it logs one INFO
line and turns on the Hub libraries' offline mode for the rest of the process, as ``HF_HUB_OFFLINE=1`` would:
files then come from the local cache or fail at once. It never overrides a choice the user made: it checks nothing
when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to any value, ``0`` included (set it yourself to skip
the check), when the caller passes ``local_files_only=True`` (nothing is downloaded, so nothing is connected to), or
when a proxy is configured (``HTTPS_PROXY`` and the like: the Hub may then be reachable only through it). The
endpoint it names in its log line has any user name and password removed (``HF_ENDPOINT=https://user:token@host``
is logged as ``https://host``).

Examples:
    >>> from unittest import mock
    >>> with mock.patch.dict("os.environ", {"HF_HUB_OFFLINE": "1"}):
    ...     offline_if_unreachable()  # already offline: nothing is checked
    True
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from urllib.parse import urlparse

__all__ = ["hub_endpoint", "offline_if_unreachable", "redact_credentials"]

logger = logging.getLogger(__name__)

_TRUE = {"1", "ON", "YES", "TRUE"}
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
#: Per endpoint: whether the last check found it unreachable (one check, and one line, per process).
_CHECKED: dict[str, bool] = {}


def hub_endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT``, else ``https://huggingface.co``."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def redact_credentials(text: str) -> str:
    """``text`` with the user name and password of every URL in it removed (what a log line or error may show).

    Examples:
        >>> redact_credentials("https://user:hf_secret@hub.example.org:8443/api")
        'https://hub.example.org:8443/api'
        >>> redact_credentials("cannot reach http://hf_token@10.0.0.2/x (timeout)")
        'cannot reach http://10.0.0.2/x (timeout)'
        >>> redact_credentials("https://huggingface.co")
        'https://huggingface.co'
    """
    return _CREDENTIALS.sub(r"\1", text)


#: ``scheme://`` followed by ``user[:password]@``: the part a log line must never show.
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _offline_already() -> bool:
    if any(os.environ.get(name, "").upper() in _TRUE for name in _OFFLINE_VARIABLES):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(constants is not None and constants.HF_HUB_OFFLINE)


def _user_chose() -> bool:
    """Whether the user set the offline mode either way (``HF_HUB_OFFLINE=0`` is a choice too)."""
    return any(name in os.environ for name in _OFFLINE_VARIABLES)


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


def offline_if_unreachable(timeout: float = 2.0, *, local_files_only: bool = False) -> bool:
    """Turn on the Hub's offline mode for this process when the Hub cannot be reached; whether it is offline.

    Call it before code that may download (this library does, before it loads a Hub id). Costs one TCP connection
    the first time (at most ``timeout`` seconds), nothing after; none at all when the user has chosen (an
    ``HF_HUB_OFFLINE`` set to any value, ``local_files_only=True``) or a proxy is configured.

    Args:
        timeout: Seconds to wait for the connection.
        local_files_only: The caller reads the cache only (``from_pretrained(..., local_files_only=True)``):
            nothing is connected to, nothing is changed.
    """
    if _offline_already():
        return True
    if local_files_only or _user_chose():
        return False  # the user's choice stands: no connection, no change to the process or its children
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
                redact_credentials(endpoint),
                reason,
            )
    if _CHECKED[endpoint]:
        _go_offline()
    return _CHECKED[endpoint]
