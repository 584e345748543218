"""The ensemble recipe's two splits: the rows the base models train on, and the held-out rows Table 7 is scored on.

:class:`RecipeData` is a picklable description (the config's ``data:`` section, the seed and the evaluation
settings), so a Ray worker loads exactly the splits the driver has. Held-out rows are, in order of what the
config asks for:

- ``evaluation.split: dev``: a dev split of the training release: the memes ``dev_file`` lists (one
  ``image_name`` per line), or a seeded ``dev_fraction`` stratified by sentiment; the paper's Table 7 is on a
  dev set;
- ``evaluation.split: test`` (the default): the test release when it carries labels, else a seeded
  ``holdout`` share of ``train``.

Examples:
    >>> data = RecipeData({"demo": {"output_dir": "/tmp/hf_memotion_doc_recipe_data", "n_train": 40,
    ...                              "n_test": 10}}, seed=0, split="dev", dev_fraction=0.25)()
    >>> data.num_rows
    {'train': 30, 'test': 10}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from hf_memotion.data.loading import load_data
from hf_memotion.tasks import PROBLEM_NAMES

__all__ = ["RecipeData"]

logger = logging.getLogger(__name__)


@dataclass
class RecipeData:
    """Loads the recipe's ``train`` and held-out ``test`` splits (call it).

    Attributes:
        section: The config's ``data:`` section (:func:`hf_memotion.data.loading.load_data`).
        source: The config's file, named in errors.
        seed: Seed of the held-out share.
        holdout: Share of ``train`` held out when there is no labelled test release (``split: test``).
        split: ``"test"`` or ``"dev"`` (see the module).
        dev_fraction: The dev share of ``train`` (``split: dev`` without ``dev_file``).
        dev_file: A file of ``image_name`` values, one per line: the dev memes.
    """

    section: dict[str, Any] = field(default_factory=lambda: {"demo": {}})
    source: str | None = None
    seed: int = 0
    holdout: float = 0.1
    split: str = "test"
    dev_fraction: float = 0.1
    dev_file: str | None = None

    def __call__(self) -> datasets.DatasetDict:
        """Load the data and split it: ``{"train": ..., "test": held-out rows}``."""
        data = load_data(self.section, source=self.source)
        if self.split == "dev":
            return self._dev(data["train"])
        labelled_test = "test" in data and all(p in data["test"].column_names for p in PROBLEM_NAMES)
        if labelled_test:
            return datasets.DatasetDict({"train": data["train"], "test": data["test"]})
        parts = data["train"].train_test_split(test_size=self.holdout, seed=self.seed, stratify_by_column="sentiment")
        logger.info("no labelled test split: holding out %d training rows for evaluation", len(parts["test"]))
        return datasets.DatasetDict({"train": parts["train"], "test": parts["test"]})

    def _dev(self, train: datasets.Dataset) -> datasets.DatasetDict:
        if self.dev_file is None:
            parts = train.train_test_split(test_size=self.dev_fraction, seed=self.seed, stratify_by_column="sentiment")
            logger.info("dev split: %d of %d training memes (seeded, stratified)", len(parts["test"]), len(train))
            return datasets.DatasetDict({"train": parts["train"], "test": parts["test"]})
        path = Path(self.dev_file)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation.dev_file {path}: no such file (one image_name per line)")
        wanted = {line.strip() for line in path.read_text().splitlines() if line.strip()}
        names = train["image_name"]
        missing = sorted(wanted - set(names))
        if missing:
            raise ValueError(
                f"evaluation.dev_file {path}: {len(missing)} image_name(s) are not in the training "
                f"release, e.g. {missing[:3]}"
            )
        dev = [i for i, n in enumerate(names) if n in wanted]
        if not dev or len(dev) == len(names):
            raise ValueError(
                f"evaluation.dev_file {path}: lists {len(dev)} of the {len(names)} training memes; "
                "the dev split needs some, and training needs the rest"
            )
        rest = sorted(set(range(len(names))) - set(dev))
        return datasets.DatasetDict({"train": train.select(rest), "test": train.select(dev)})
