import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_data_script_writes_and_describes_the_data(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_demo_data.py"),
            str(ROOT / "configs" / "demo.yaml"),
            f"data.demo.output_dir={out}",
            "data.demo.n_train=30",
            "data.demo.n_test=10",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "[train] 30 memes" in result.stdout and "[test] 10 memes" in result.stdout
    assert "humour_intensity" in result.stdout
    assert (out / "memotion_dataset_7k" / "labels.csv").is_file()
    assert (out / "memotion_test_release" / "Meme_groundTruth.csv").is_file()


@pytest.mark.slow
def test_make_demo_data_script_refuses_to_clobber_and_reports_bad_config(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    script = str(ROOT / "scripts" / "make_demo_data.py")
    result = subprocess.run(
        [sys.executable, script, f"data.demo.output_dir={tmp_path / 'taken'}"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "did not write" in result.stderr
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    result = subprocess.run(  # overwrite=true replaces a demo dataset only, never a folder of the user's
        [sys.executable, script, f"data.demo.output_dir={tmp_path / 'taken'}", "overwrite=true"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "did not write" in result.stderr
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    result = subprocess.run([sys.executable, script, str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert result.returncode != 0 and "none.yaml not found" in result.stderr
    result = subprocess.run([sys.executable, script, "data.demo.n_trains=3"], capture_output=True, text=True)
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        "error: configs/demo.yaml, section 'data.demo': unknown key 'n_trains' (did you mean 'n_train'?); valid keys: "
        "image_signal, image_size, missing_corrected, n_test, n_train, output_dir, seed, text_signal"
    ]


def test_train_text_script_trains_saves_and_reports(tmp_path):
    demo = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_text.py"),
            str(ROOT / "configs" / "text_demo.yaml"),
            f"data.demo.output_dir={demo}",
            "data.demo.n_train=60",
            "data.demo.n_test=20",
            f"output_dir={tmp_path / 'run'}",
            "problems=[humour,sentiment]",
            "n_splits=2",
            "training.epochs=2",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_MEMOTION_PROGRESS": "0"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[multitask] saved to" in result.stdout and "out-of-fold" in result.stdout and "test " in result.stdout
    assert (tmp_path / "run" / "multitask" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "multitask" / "model" / "tokenizer.json").is_file()
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_text.py"),
            str(ROOT / "configs" / "text_demo.yaml"),
            "layout=sideways",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "'layout' must be 'multitask' or 'per_problem'" in bad.stderr
