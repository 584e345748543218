"""Model cards and publishing: cards parse back with their metrics, a dry run lists what an upload sends,
and Hub failures (no token, offline, unreachable, refused) are reported as one readable line."""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard

from hf_memotion.cards import MODEL_ID_PLACEHOLDER, ensemble_card, score_name, write_model_card
from hf_memotion.hub import HubPublishError, PushSpec, push_folder, upload_plan

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "scripts" / "push_to_hub.py")

FINAL = {"subtask_a": 0.5, "subtask_b": 0.61, "sentiment": 0.5, "humour": 0.55, "humour_intensity": 0.3}
REPORT = {
    "table7": [
        {"name": "text", "family": "text", "scores": {"subtask_a": 0.41, "sentiment": 0.41, "humour": 0.52}},
        {"name": "ensemble all (modality ensemble)", "family": "all", "scores": FINAL},
    ],
    "table8": {"sentiment": "logistic_regression", "humour": "average"},
    "settings": {
        "n_splits": 5,
        "models": [
            {"name": "bert", "family": "text", "backbone": "google-bert/bert-base-uncased", "training": {"lr": 1}},
            {"name": "resnet", "family": "vision", "architecture": "resnet50", "pretrained": True},
        ],
        "stacking": {"methods": ["average", "logistic_regression"], "features": "own"},
    },
    "members": {  # what each member's family states (its card_facts), as the recipe records it
        "bert": {"network": "google-bert/bert-base-uncased", "base_model": "google-bert/bert-base-uncased"},
        "resnet": {"network": "resnet50", "base_model": "timm/resnet50.a1_in1k", "pretrained": "timm/resnet50.a1_in1k"},
    },
    "n_train": 6000,
    "n_test": 1000,
    "data": {"name": "someone/memotion", "description": "Hugging Face Hub dataset someone/memotion"},
}


def test_the_families_state_where_the_weights_came_from_offline():
    from hf_memotion.families import get_family, parse_member

    vision = parse_member({"family": "vision", "architecture": "resnet50", "pretrained": True})
    assert get_family("vision").card_facts(vision)["base_model"] == "timm/resnet50.a1_in1k"  # timm's own tag
    text = parse_member({"family": "text", "backbone": "google-bert/bert-base-uncased"})
    assert get_family("text").card_facts(text)["base_model"] == "google-bert/bert-base-uncased"
    assert get_family("text").card_facts(parse_member({"family": "text"}))["base_model"] is None  # a tiny backbone


def test_ensemble_card_round_trips_with_the_reports_metrics_and_no_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("rendering a card must not open a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = write_model_card(tmp_path, ensemble_card(REPORT))
    card = ModelCard.load(path)
    final = REPORT["table7"][-1]["scores"]
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {
        score_name(k): v for k, v in final.items() if k != "sentiment"
    }
    assert {r.dataset_type for r in card.data.eval_results} == {"someone/memotion"}
    assert card.data.datasets == ["someone/memotion"]
    assert "google-bert/bert-base-uncased" in card.data.base_model and "timm/resnet50.a1_in1k" in card.data.base_model
    assert card.data.pipeline_tag == "image-classification" and card.data.license == "apache-2.0"
    for section in (
        "## Intended use",
        "## Training data",
        "## Training procedure",
        "### Hyperparameters",
        "## Evaluation results",
        "## Limitations and biases",
        "## Framework versions",
        "## Citation",
    ):
        assert section in card.text, section
    assert "| text | 0.410 |" in card.text  # the Table 7 rows, base models included
    assert "synthetic demo" not in card.text  # real data: no demo warning


def _folder(tmp_path):
    folder = tmp_path / "ensemble"
    (folder / "meta").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "meta" / "humour.skops").write_bytes(b"x" * 10)
    (folder / ".demo_config").write_text("hidden")
    (folder / ".config.json.abc.tmp").write_text("unfinished atomic write")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"")
    write_model_card(folder, ensemble_card(REPORT))
    return folder


def test_dry_run_lists_exactly_the_files_an_upload_sends(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    dry = subprocess.run(
        [sys.executable, SCRIPT, str(folder), "--repo-id", "me/memotion", "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = [line.split("\t")[0] for line in dry.stdout.splitlines()]
    assert listed == ["README.md", "config.json", "meta/humour.skops"]
    assert "3 files" in dry.stderr and "would be uploaded to me/memotion" in dry.stderr

    sent = {}
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: sent.update(repo=(repo_id, kw)))
    monkeypatch.setattr(HfApi, "create_branch", lambda self, repo_id, **kw: sent.update(branch=kw["branch"]))

    def create_commit(self, repo_id, operations, **kw):
        sent["files"] = {op.path_in_repo: op for op in operations}
        sent["revision"] = kw.get("revision")
        return type("Commit", (), {"commit_url": f"https://hf.co/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    result = push_folder(folder, "me/memotion", private=True, revision="v1")
    assert sorted(sent["files"]) == listed and result.url.endswith("/commit/1")
    assert sent["repo"] == ("me/memotion", {"private": True, "repo_type": "model", "exist_ok": True})
    assert sent["branch"] == "v1" and sent["revision"] == "v1"
    # the uploaded card names the repository; the local one keeps the placeholder path
    uploaded = sent["files"]["README.md"].path_or_fileobj
    readme = uploaded.decode() if isinstance(uploaded, bytes) else Path(uploaded).read_text()
    assert 'model="me/memotion"' in readme and MODEL_ID_PLACEHOLDER in (folder / "README.md").read_text()


def test_publishing_refuses_pickles_and_bad_input_plainly(tmp_path):
    folder = _folder(tmp_path)
    (folder / "estimator.joblib").write_bytes(b"\x80")
    with pytest.raises(HubPublishError, match=r"pickle-based files \['estimator.joblib'\]"):
        upload_plan(folder)
    with pytest.raises(HubPublishError, match="is not a folder"):
        upload_plan(tmp_path / "missing")
    with pytest.raises(HubPublishError, match="namespace/name"):
        push_folder(folder, "no-namespace", dry_run=True)
    with pytest.raises(ValueError, match="repo_id required"):
        PushSpec.from_config({"private": True})
    assert PushSpec.from_config({"repo_id": "me/m-{name}"}).repo_for("text") == "me/m-text"


def _push(folder, env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run(
        [sys.executable, SCRIPT, str(folder), "--repo-id", "me/memotion"],
        capture_output=True,
        text=True,
        env={**clean, **env},
    )


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # every Hub API call is refused: the token is not valid
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_hub_failures_are_one_readable_line(tmp_path):
    folder = _folder(tmp_path)
    home = {"HF_HOME": str(tmp_path / "hf_home")}
    no_token = _push(folder, home)
    assert no_token.returncode != 0 and "no Hugging Face token: run `hf auth login` or set HF_TOKEN" in no_token.stderr
    assert "Traceback" not in no_token.stderr
    offline = _push(folder, {**home, "HF_TOKEN": "hf_test", "HF_HUB_OFFLINE": "1"})
    assert "HF_HUB_OFFLINE is set" in offline.stderr and "Traceback" not in offline.stderr
    closed = f"http://127.0.0.1:{_free_port()}"
    unreachable = _push(folder, {**home, "HF_TOKEN": "hf_test", "HF_ENDPOINT": closed})
    assert f"cannot reach the Hub at {closed}" in unreachable.stderr and "Traceback" not in unreachable.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        refused = _push(folder, {**home, "HF_TOKEN": "hf_test", "HF_ENDPOINT": endpoint})
    finally:
        server.shutdown()
    assert "the Hub rejected the token (401)" in refused.stderr and "Traceback" not in refused.stderr


def test_the_card_templates_are_the_top_level_folder_and_ship_in_the_wheel(tmp_path):
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from hf_memotion.cards.rendering import TEMPLATES

    root = Path(__file__).resolve().parents[1]
    assert TEMPLATES.resolve() == (root / "model_cards").resolve()
    templates = sorted(p.name for p in (root / "model_cards").glob("*.md") if p.name != "README.md")
    assert templates == ["base_model.md", "ensemble.md", "vise.md"]
    import shutil

    source = tmp_path / "source"  # built from a copy: the checkout gets no build/ folder
    shutil.copytree(
        root / "src", source / "src", symlinks=True, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    shutil.copytree(root / "model_cards", source / "model_cards")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, source / name)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("hf_memotion-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"hf_memotion/model_cards/{t}" for t in templates} <= names
