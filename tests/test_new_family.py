"""A family is one room: a bag-of-words member, defined and registered in this file alone, trains through the
recipe beside a textual member, is stacked, saved, loaded and served by ``pipeline("meme-emotion")``, with no change
to the library.

Everything below the imports is what a user adding a family writes (the guide "Adding a model family" walks through
the same steps): a config and model class registered with transformers' Auto classes, a preprocessor that saves
beside the model, the input it reads from a meme, the family's YAML section, and the family.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel, pipeline

from hf_memotion.cards import ModelCardMixin
from hf_memotion.data import make_demo_data
from hf_memotion.ensemble import MemotionEnsembleModel
from hf_memotion.families import MemberInput, MemberSpec, ModelFamily, get_family, prepare_run, register_family
from hf_memotion.models.heads import MemotionClassifierOutput, ProblemHeads, ProblemLabelsMixin, split_logits
from hf_memotion.recipe.ensemble_recipe import run_training
from hf_memotion.training import ClassifierTrainingArguments, CrossValidator
from hf_memotion.training.runs import run_classifier

# ------------------------------------------------------------------------------------------------ the model


class BagOfWordsConfig(ProblemLabelsMixin, PretrainedConfig):
    model_type = "test_bag_of_words"

    problems: list[str] | None = None
    problem_labels: dict[str, list[str]] | None = None
    class_weights: dict[str, list[float]] | None = None
    buckets: int = 128

    def __post_init__(self, **kwargs: Any):
        requested = self._take_label_fields(kwargs)
        super().__post_init__(**kwargs)
        self._finish_problems(*requested)


class BagOfWordsForClassification(ModelCardMixin, PreTrainedModel):
    config_class = BagOfWordsConfig
    card_kind = "base_model"
    main_input_name = "bag"

    def __init__(self, config: BagOfWordsConfig):
        super().__init__(config)
        self.heads = ProblemHeads(config.buckets, config.problem_labels, config.class_weights)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ProblemHeads):
            module.reset_class_weights()

    def forward(self, bag: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any):
        logits = self.heads(bag)
        loss = self.heads.loss(logits, labels) if labels is not None else None
        problem_logits = split_logits(logits, self.config.problem_labels)
        return MemotionClassifierOutput(loss=loss, logits=logits, problem_logits=problem_logits)


AutoConfig.register(BagOfWordsConfig.model_type, BagOfWordsConfig, exist_ok=True)
AutoModelForSequenceClassification.register(BagOfWordsConfig, BagOfWordsForClassification, exist_ok=True)


class HashedWords:
    """Word counts hashed into ``buckets`` (a preprocessor that saves beside the model, as a tokenizer does)."""

    file = "hashed_words.json"

    def __init__(self, buckets: int):
        self.buckets = int(buckets)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        bag = torch.zeros(len(texts), self.buckets)
        for row, text in enumerate(texts):
            for word in str(text).lower().split():
                bag[row, zlib.crc32(word.encode()) % self.buckets] += 1.0
        return bag

    def save_pretrained(self, folder: str | Path) -> None:
        (Path(folder) / self.file).write_text(json.dumps({"buckets": self.buckets}))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> HashedWords:
        return cls(json.loads((Path(folder) / cls.file).read_text())["buckets"])


class BagInput(MemberInput):
    """What the member reads from a meme: its text's hashed word counts."""

    suffix = "bag"

    def __init__(self, words: HashedWords):
        self.words = words

    def group_key(self) -> str:
        return json.dumps({"hashed_words": self.words.buckets})

    def encode(self, images, texts, *, ten_crop: bool) -> dict[str, torch.Tensor]:
        return {"bag": self.words(list(texts))}


# ------------------------------------------------------------------------------------------------ the family


@dataclass
class BagOfWordsMemberSpec(MemberSpec):
    family: str = "bag_of_words"
    buckets: int = 128
    training: ClassifierTrainingArguments = field(
        default_factory=lambda: ClassifierTrainingArguments(
            optimizer="adam",
            learning_rate=0.05,
            epochs=8,
            batch_size=32,
            early_stopping_patience=None,
            validation_fraction=0.0,
        )
    )


@register_family
class BagOfWordsFamily(ModelFamily):
    name = "bag_of_words"
    label = "bag of words"
    model_types = (BagOfWordsConfig.model_type,)  # what a saved member's config.json may name
    spec_class = BagOfWordsMemberSpec
    reads = ("text",)

    def train(self, data, output_dir, entry, run):
        prepared = prepare_run(data, entry, run)
        words = HashedWords(entry.spec.buckets)
        problems = prepared.problems

        def view(split: datasets.Dataset) -> datasets.Dataset:
            with_labels = all(p in split.column_names for p in problems)
            rows = split.select_columns(["text", *problems] if with_labels else ["text"])

            def transform(batch):
                out = {"bag": list(words(batch["text"]))}
                if with_labels:
                    out["labels"] = [torch.tensor(r) for r in zip(*(batch[p] for p in problems), strict=True)]
                return out

            rows.set_transform(transform)
            return rows

        def collate(rows):
            batch = {"bag": torch.stack([r["bag"] for r in rows])}
            if "labels" in rows[0]:
                batch["labels"] = torch.stack([r["labels"] for r in rows])
            return batch

        def model_init():
            config = BagOfWordsConfig(
                problems=problems, buckets=words.buckets, **{k: v for k, v in prepared.model_kwargs.items()}
            )
            return BagOfWordsForClassification(config)

        validator = CrossValidator(
            model_init,
            prepared.problem_labels,
            prepared.training,
            n_splits=run.n_splits,
            seed=run.seed,
            data_collator=collate,
        )
        return run_classifier(
            validator,
            train_dataset=view(prepared.train),
            output_dir=output_dir,
            settings=prepared.settings,
            preprocessor=words,
            test_dataset=view(prepared.test) if prepared.scored else None,
            test_labels=prepared.test_labels,
            train_labels=prepared.train_labels(),
            run=prepared.options(self.card_facts(entry.spec)),
        )

    def load(self, folder, **options):
        options.pop("attn_implementation", None)
        return AutoModelForSequenceClassification.from_pretrained(folder, **options), self.load_preprocessor(folder)

    def load_preprocessor(self, folder):
        return HashedWords.from_pretrained(folder)

    def inputs(self, preprocessor, max_length):
        return [BagInput(preprocessor)]


# ------------------------------------------------------------------------------------------------ the proof


def test_a_family_defined_here_trains_stacks_saves_loads_and_serves_with_no_change_in_the_library(tmp_path):
    demo = make_demo_data(tmp_path / "demo", n_train=150, n_test=40, image_size=48, seed=5)
    config = {
        "data": {"path": str(demo)},
        "output_dir": str(tmp_path / "run"),
        "n_splits": 2,
        "bf16_check": False,
        "stacking": {"methods": ["average", "logistic_regression"]},
        "models": [
            {
                "name": "text",
                "family": "text",
                "tiny": {"hidden_size": 16, "num_layers": 1},
                "model": {"lstm_hidden_size": 8, "attention_size": 8, "ffn_size": 8, "max_length": 16},
                "training": {"epochs": 3, "batch_size": 32, "learning_rate": 3e-3},
            },
            {"name": "words", "family": "bag_of_words", "buckets": 64},
        ],
    }
    report = run_training(config)
    rows = {row["name"]: row for row in report["table7"]}
    assert {"words", "ensemble (bag of words)", "ensemble all (modality ensemble)"} <= set(rows)
    assert rows["words"]["family"] == "bag_of_words" and 0.0 <= rows["words"]["scores"]["subtask_a"] <= 1.0
    folder = tmp_path / "run" / "ensemble"
    saved = json.loads((folder / "config.json").read_text())
    assert {m["name"]: m["family"] for m in saved["base_models"]} == {"text": "text", "words": "bag_of_words"}
    assert (folder / "words" / HashedWords.file).is_file()

    ensemble = MemotionEnsembleModel.from_pretrained(folder, dtype=torch.float32)
    assert isinstance(ensemble.base_models["words"], BagOfWordsForClassification)
    pipe = pipeline("meme-emotion", model=str(folder), dtype=torch.float32)
    images = sorted(demo.rglob("*.jp*"))[:3]
    memes = [{"image": str(p), "text": t} for p, t in zip(images, ["lol", "a b", "c"], strict=True)]
    answers = pipe(memes, return_base=True, explain=True)
    assert len(answers) == 3 and set(answers[0]["base"]) == {"text", "words"}
    assert set(answers[0]["modalities"]) == {"text", "bag_of_words"}
    humour = answers[0]["explanation"]["humour"]
    assert set(humour["members"]) == {"text", "words"} and "words" not in humour["words"]  # Shapley share only
    direct = ensemble.predict_proba(
        [ensemble_image(m["image"]) for m in memes], [m["text"] for m in memes], ten_crop=True
    )
    served = np.array(
        [[a["sentiment"]["scores"][label] for label in ensemble.config.problem_labels["sentiment"]] for a in answers]
    )
    np.testing.assert_allclose(served, direct["sentiment"], atol=1e-6)
    assert get_family("bag_of_words").label == "bag of words"


def ensemble_image(path: str):
    from hf_memotion.data.images import load_rgb_image

    return load_rgb_image(path)
