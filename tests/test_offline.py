"""Without a network: one line and the local cache at once, never minutes of Hub retries."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest

from hf_memotion.hub import connectivity

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def _no_network_env(tmp_path) -> dict[str, str]:
    """The environment of a process on a machine without a network: no HF_HUB_OFFLINE, an empty cache."""
    hub = ("HF_", "TRANSFORMERS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(hub) and "proxy" not in k.lower()}
    env.update(HF_ENDPOINT=UNREACHABLE, HF_HOME=str(tmp_path / "hf_home"))
    return env


def test_an_unreachable_hub_turns_offline_mode_on_with_one_line(online_process, caplog):
    online_process.setenv("HF_ENDPOINT", UNREACHABLE)
    with caplog.at_level(logging.INFO, logger=connectivity.__name__):
        assert connectivity.offline_if_unreachable(timeout=2)
        assert connectivity.offline_if_unreachable(timeout=2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "cannot be reached" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert huggingface_hub.constants.HF_HUB_OFFLINE and huggingface_hub.is_offline_mode()
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_reachable_hub_or_a_proxy_leaves_the_mode_alone(online_process):
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    try:
        online_process.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert not connectivity.offline_if_unreachable(timeout=2)
        assert not huggingface_hub.constants.HF_HUB_OFFLINE
    finally:
        server.close()
    online_process.setattr(connectivity, "_CHECKED", {})
    online_process.setenv("HF_ENDPOINT", UNREACHABLE)
    online_process.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # the Hub may be reachable through it
    assert not connectivity.offline_if_unreachable(timeout=2) and not huggingface_hub.constants.HF_HUB_OFFLINE


def test_from_backbone_without_a_network_fails_at_once_and_says_what_to_do(tmp_path):
    code = (
        "from hf_memotion import MemotionTextForSequenceClassification\n"
        "MemotionTextForSequenceClassification.from_backbone('bert-large-uncased')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_no_network_env(tmp_path), timeout=300
    )
    assert done.returncode != 0
    assert "not in the Hugging Face cache, and the Hub cannot be reached" in done.stderr
    assert "Retrying" not in done.stderr


@pytest.mark.slow
def test_the_papers_plan_without_a_network_needs_no_retry(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), str(ROOT / "configs" / "paper.yaml"), "--plan"],
        capture_output=True,
        text=True,
        env=_no_network_env(tmp_path),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GPU-hours" in done.stdout and "published sizes" in done.stdout
    assert "Retrying" not in done.stderr and done.stderr.count("cannot be reached") == 1
