"""Quiet, useful logs: one summary line per training at INFO, its per-log metrics at DEBUG, calm bars in files."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from hf_memotion import logs
from hf_memotion.training import trainer as trainer_module
from hf_memotion.training.arguments import build_training_arguments
from hf_memotion.training.trainer import LoggingProgressCallback, MemotionTrainer


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, x, labels):
        logits = self.linear(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def test_a_training_logs_one_summary_line_and_its_metrics_at_debug(tmp_path, caplog):
    rows = [{"x": torch.tensor([float(i % 2), 1.0]), "labels": i % 2} for i in range(16)]
    folder = tmp_path / "models" / "text" / "folds" / "fold_1" / "checkpoints"
    args = build_training_arguments(folder, batch_size=4, num_train_epochs=2, save_strategy="no", disable_tqdm=False)
    trainer = MemotionTrainer(model=_Toy(), args=args, train_dataset=rows)
    assert any(isinstance(c, LoggingProgressCallback) for c in trainer.callback_handler.callbacks)
    with caplog.at_level(logging.DEBUG, logger=trainer_module.__name__):
        trainer.train()
    records = [r for r in caplog.records if r.name == trainer_module.__name__]
    info = [r.getMessage() for r in records if r.levelno == logging.INFO]
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    assert len(info) == 1 and info[0].startswith("text fold_1: 8 steps, 2.0 epochs") and "train_loss" in info[0]
    assert debug and all(m.startswith("text fold_1 epoch") for m in debug)


def test_the_log_level_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("HF_MEMOTION_LOG_LEVEL", "warning")
    assert logs.log_level() == logging.WARNING
    monkeypatch.setenv("HF_MEMOTION_LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="HF_MEMOTION_LOG_LEVEL='LOUD' is not a logging level"):
        logs.log_level()


def test_configure_logging_quiets_what_reads_as_an_error(monkeypatch):
    from transformers.utils import logging as transformers_logging

    monkeypatch.delenv("HF_MEMOTION_LOG_LEVEL", raising=False)
    shown = transformers_logging.is_progress_bar_enabled()
    try:
        logs.configure_logging()
        assert logging.getLogger("faiss.loader").level == logging.WARNING
        assert not transformers_logging.is_progress_bar_enabled()  # no weight-loading or shard-writing bars
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def test_bars_redraw_seldom_in_a_log_file_and_the_user_setting_wins(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    logs.calm_progress_bars()
    assert os.environ["TQDM_MININTERVAL"] == logs.FILE_BAR_INTERVAL
    monkeypatch.setenv("TQDM_MININTERVAL", "0.5")
    logs.calm_progress_bars()
    assert os.environ["TQDM_MININTERVAL"] == "0.5"
