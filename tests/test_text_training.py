import dataclasses

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.numpy import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import hf_memotion.training.cross_validation as cv_module
from hf_memotion.cards import score_name
from hf_memotion.data import load_memotion, make_demo_data
from hf_memotion.families import MemberRun, ModelEntry, StudySpec, TextMemberSpec, train_member
from hf_memotion.families.search import run_study
from hf_memotion.metrics import memotion_scores
from hf_memotion.models.text.preprocessing import encode_texts
from hf_memotion.training import ClassifierTrainingArguments

PROBLEMS = ["sentiment", "humour", "offensive_intensity", "motivational"]
MODEL = {
    "lstm_hidden_size": 32,
    "attention_size": 32,
    "ffn_size": 32,
    "dropout": 0.0,
    "max_length": 32,
    "pooling": "max",
}
TINY = {"hidden_size": 32, "num_layers": 1}
TRAINING = ClassifierTrainingArguments(epochs=30, learning_rate=3e-3, batch_size=16, early_stopping_patience=6)
SPEC = TextMemberSpec(backbone="tiny:bert", problems=PROBLEMS, training=TRAINING, model=MODEL, tiny=TINY)


def train(data, out, spec=SPEC, **run):
    return train_member(data, out, spec, MemberRun(n_splits=3, seed=0, **run))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_memotion(make_demo_data(tmp_path_factory.mktemp("text") / "demo", n_train=400, n_test=100, seed=21))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("text_run")
    return out, train(data, out)


def _majority(labels):
    return {p: np.full(len(v), np.bincount(v).argmax()) for p, v in labels.items()}


def test_training_on_demo_data_beats_the_majority_class_on_every_problem(data, trained):
    _, result = trained
    train_labels = {p: np.asarray(data["train"][p]) for p in PROBLEMS}
    majority = memotion_scores(_majority(train_labels), train_labels)
    for problem in PROBLEMS:
        assert result.oof_scores[problem] > majority[problem] + 0.05, (problem, result.oof_scores, majority)
    test_labels = {p: np.asarray(data["test"][p]) for p in PROBLEMS}
    test_majority = memotion_scores(_majority(test_labels), test_labels)
    for problem in PROBLEMS:
        assert result.test_scores[problem] > test_majority[problem], (problem, result.test_scores)


def test_out_of_fold_probabilities_cover_every_training_row_exactly_once(data, trained):
    out, result = trained
    n = data["train"].num_rows
    for problem, probabilities in result.oof_probabilities.items():
        assert probabilities.shape == (n, len(data["train"].features[problem].names))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    folds = [load_file(out / "folds" / f"fold_{k}" / "oof.safetensors")["indices"] for k in range(3)]
    together = np.concatenate(folds)
    assert len(together) == n and sorted(together.tolist()) == list(range(n))
    saved = load_file(out / "oof_probabilities.safetensors")
    np.testing.assert_allclose(saved["sentiment"], result.oof_probabilities["sentiment"], rtol=1e-6)


def test_saved_model_and_tokenizer_reproduce_the_test_predictions(data, trained):
    out, result = trained
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    texts = data["test"]["text"][:8]
    batch = tokenizer.pad({"input_ids": encode_texts(tokenizer, texts, 32)["input_ids"]}, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**batch).problem_logits["sentiment"].softmax(-1).numpy()
    np.testing.assert_allclose(probabilities, result.test_probabilities["sentiment"][:8], atol=1e-5)
    assert (
        model.config.class_weights["sentiment"][0] > model.config.class_weights["sentiment"][2]
    )  # rare class weighs more


@pytest.mark.slow
def test_a_repeated_run_reuses_finished_folds_and_changed_settings_retrain(data, trained, monkeypatch):
    out, result = trained
    calls = []
    real_fit = cv_module.fit_classifier
    monkeypatch.setattr(cv_module, "fit_classifier", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    finished = train(data, out)
    assert calls == []  # a finished run (folds, refit, test scores) is reused whole
    assert finished.test_scores == result.test_scores and finished.model is not None
    (out / "folds" / "fold_1" / "metrics.json").unlink()  # as if the run was killed inside fold 1
    again = train(data, out, refit=False)
    assert len(calls) == 1  # only fold 1 trained again
    reused = load_file(out / "folds" / "fold_0" / "oof.safetensors")["indices"]
    np.testing.assert_allclose(again.oof_probabilities["humour"][reused], result.oof_probabilities["humour"][reused])
    calls.clear()
    train(data, out, dataclasses.replace(SPEC, model={**MODEL, "ffn_size": 16}), refit=False)
    assert len(calls) == 3  # another setting: every fold retrains


def test_optuna_search_runs_the_asked_number_of_trials_and_resumes(data, tmp_path):
    space = {
        "learning_rate": (1e-3, 5e-3),
        "optimizer": ["adam", "adam_warmup"],
        "dropout": (0.0, 0.3),
        "lstm_layers": [1, 2],
        "lstm_hidden_size": [8, 16],
    }
    spec = TextMemberSpec(
        problems=["motivational"],
        training=ClassifierTrainingArguments(epochs=2, batch_size=32),
        model={"attention_size": 8, "ffn_size": 8},
        tiny={"hidden_size": 16, "num_layers": 1},
        search=StudySpec(n_trials=2, space=space),
    )
    small = data["train"].select(range(120))
    run = MemberRun(n_splits=2, refit=False)
    study = run_study(small, tmp_path, ModelEntry.of(spec), run)
    assert len(study.trials) == 2 and all(t.value is not None for t in study.trials)
    for trial in study.trials:
        assert 1e-3 <= trial.params["learning_rate"] <= 5e-3 and trial.params["lstm_layers"] in (1, 2)
    more = dataclasses.replace(spec, search=StudySpec(n_trials=3, space=space))
    study = run_study(small, tmp_path, ModelEntry.of(more), run)
    assert len(study.trials) == 3
    assert 0.0 <= study.best_value <= 1.0


def test_sgd_schedule_cuts_the_rate_at_the_milestones(data, tmp_path):
    from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
    from hf_memotion.models.text.preprocessing import prepare_text_dataset
    from hf_memotion.models.text.tiny import build_tiny_text_backbone
    from hf_memotion.training import fit_classifier

    train = data["train"].select(range(64))
    backbone, tokenizer = build_tiny_text_backbone("bert", train["text"], hidden_size=16, num_layers=1)
    model = MemotionTextForSequenceClassification(
        MemotionTextConfig(text_config=backbone, problems=["humour"], lstm_hidden_size=8, attention_size=8, ffn_size=8)
    )
    settings = ClassifierTrainingArguments(
        optimizer="sgd", learning_rate=0.1, epochs=3, batch_size=32, lr_milestones=(1, 2)
    )
    from transformers import DataCollatorWithPadding

    trainer = fit_classifier(
        model,
        prepare_text_dataset(train, tokenizer, ["humour"], 32),
        None,
        settings,
        tmp_path,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.95
    rates = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert rates == pytest.approx([0.1, 0.01, 0.001])  # the rate each epoch trained at: x0.1 after epochs 1 and 2


def test_the_saved_model_folder_carries_a_model_card_with_the_runs_scores(trained):
    out, result = trained  # (a later test re-runs in this folder without refit: metrics.json changes, the card not)
    card = ModelCard.load(out / "model" / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "hf-memotion"
    logged = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert logged == {score_name(p): result.test_scores[p] for p in PROBLEMS}
    assert "synthetic demo memes" in card.text and "@inproceedings{jia2021vise" in card.text
    assert card.data.base_model is None  # a tiny backbone from a config: no pretrained weights to name
