"""What ``scripts/train.py`` runs: base models, stacking, evaluation, the ensemble repo and the report.

Steps (Section 4 of the Memotion paper):

1. load the data (a Memotion folder, a Hub dataset, or the demo data);
2. train every base model of the config with k-fold cross-validation (out-of-fold probabilities
   for every training row, refit, held-out probabilities), each in ``models/<name>/`` and resumable;
3. fit the meta-estimators per problem on the out-of-fold probabilities: of all models (the
   modality ensemble) and of each modality alone (for the ablation);
4. score every base model, each modality's ensemble and the full ensemble on the held-out split
   (Table 7), record the chosen meta-estimators (Table 8);
5. write ``ensemble/`` (``pipeline("meme-emotion", model=...)`` loads it), ``report.md``,
   ``report.json``, ``answer.txt`` (official submission of the held-out split) and plots.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from sklearn.metrics import confusion_matrix
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from hf_memotion.config import load_data
from hf_memotion.data.memotion import write_answer_file
from hf_memotion.distributed import process_state
from hf_memotion.hub.cards import ensemble_card, write_model_card
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.metrics import memotion_scores
from hf_memotion.models.ensemble import MemotionEnsembleConfig, MemotionEnsembleModel, fit_stackers
from hf_memotion.models.ensemble.stacking import META_METHODS
from hf_memotion.tasks import EMOTIONS, PROBLEM_NAMES
from hf_memotion.training.runs import ClassifierRunResult, check_keys, data_provenance
from hf_memotion.training.trainer import ClassifierTrainingConfig

__all__ = ["TrainingReport", "format_table7", "run_training"]

logger = logging.getLogger(__name__)

_MODEL_KEYS = {"name", "modality", "backbone", "architecture", "problems", "layout", "training", "model", "tiny",
               "processor", "ten_crop", "pretrained", "pretrained_file", "vise_backbone", "weighted_loss"}  # fmt: skip


def _expand(models: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per trained model: ``layout: per_problem`` (the paper's) becomes one model per problem."""
    out = []
    for entry in models:
        check_keys(entry, _MODEL_KEYS)
        layout = entry.get("layout", "multitask")
        if layout not in ("multitask", "per_problem"):
            raise ValueError(
                f"model {entry.get('name')!r}: layout must be 'multitask' or 'per_problem', got {layout!r}"
            )
        problems = list(entry.get("problems") or PROBLEM_NAMES)
        if layout == "multitask":
            out.append({**entry, "problems": problems, "group": entry["name"]})
        else:
            out.extend(
                {**entry, "name": f"{entry['name']}-{p}", "problems": [p], "group": entry["name"]} for p in problems
            )
    return out


class TrainingReport(dict):
    """``report.json`` as a dict: ``table7`` (rows of macro-F1), ``table8`` (method per problem), settings."""


def _split_holdout(data: datasets.DatasetDict, fraction: float, seed: int) -> datasets.DatasetDict:
    labelled_test = "test" in data and all(p in data["test"].column_names for p in PROBLEM_NAMES)
    if labelled_test:
        return datasets.DatasetDict({"train": data["train"], "test": data["test"]})
    parts = data["train"].train_test_split(test_size=fraction, seed=seed, stratify_by_column="sentiment")
    logger.info("no labelled test split: holding out %d training rows for evaluation", len(parts["test"]))
    return datasets.DatasetDict({"train": parts["train"], "test": parts["test"]})


def _train_base_model(entry: Mapping[str, Any], data: datasets.DatasetDict, folder: Path, common: Mapping[str, Any]):
    from hf_memotion.training.text import train_text_classifier
    from hf_memotion.training.vision import train_vision_classifier

    problems = list(entry["problems"])
    training = ClassifierTrainingConfig.from_dict(entry.get("training"))
    if entry.get("modality") == "text":
        return train_text_classifier(
            data, folder, backbone=entry.get("backbone", "tiny:bert"), problems=problems, training=training,
            model_kwargs=entry.get("model"), tiny_kwargs=entry.get("tiny"),
            weighted_loss=bool(entry.get("weighted_loss", True)), **common,
        )  # fmt: skip
    if entry.get("modality") == "vision":
        file = entry.get("pretrained_file")
        return train_vision_classifier(
            data, folder, architecture=entry.get("architecture", "test_resnet"), problems=problems,
            training=training, model_kwargs=entry.get("model"), processor_kwargs=entry.get("processor"),
            ten_crop=bool(entry.get("ten_crop", True)), pretrained=bool(entry.get("pretrained", False)),
            pretrained_cfg_overlay={"file": str(file)} if file else None, vise_backbone=entry.get("vise_backbone"),
            weighted_loss=bool(entry.get("weighted_loss", True)), **common,
        )  # fmt: skip
    raise ValueError(f"model {entry.get('name')!r}: modality must be 'text' or 'vision', got {entry.get('modality')!r}")


def _scores(probabilities: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    shared = {p: v for p, v in probabilities.items() if p in labels}
    return memotion_scores({p: v.argmax(-1) for p, v in shared.items()}, {p: labels[p] for p in shared})


def _combine(stackers, probabilities: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    ensemble = MemotionEnsembleModel(MemotionEnsembleConfig(problems=list(stackers)), stackers=stackers)
    return ensemble.combine(probabilities)


def format_table7(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table in the form of the paper's Table 7 (macro-F1; emotions in the official hsom order)."""
    heads = ["model", "A", "B ave.", *[f"B {e[:4]}." for e in EMOTIONS], "C ave.", *[f"C {e[:4]}." for e in EMOTIONS]]
    keys = ["subtask_a", "subtask_b", *EMOTIONS, "subtask_c", *[f"{e}_intensity" for e in EMOTIONS]]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        cells = [f"{row['scores'][k]:.3f}" if k in row["scores"] else "-" for k in keys]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plots(output: Path, rows: Sequence[Mapping[str, Any]], final: Mapping[str, np.ndarray], labels) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_memotion.tasks import get_problem

    written = []
    fig, ax = plt.subplots(figsize=(12, 4))
    problems = [p for p in PROBLEM_NAMES if p in final]
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        ax.bar(
            np.arange(len(problems)) + i * width,
            [row["scores"].get(p, 0.0) for p in problems],
            width,
            label=row["name"],
        )
    ax.set_xticks(np.arange(len(problems)) + 0.4 - width / 2, problems, rotation=30, ha="right")
    ax.set_ylabel("macro-F1 (held-out)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(output / "scores.png", dpi=100)
    plt.close(fig)
    written.append("scores.png")
    fig, axes = plt.subplots(1, len(problems), figsize=(3.2 * len(problems), 3.2))
    for ax, problem in zip(np.atleast_1d(axes), problems, strict=True):
        names = get_problem(problem).labels
        matrix = confusion_matrix(labels[problem], final[problem].argmax(-1), labels=range(len(names)))
        ax.imshow(matrix, cmap="Blues")
        for (r, c), value in np.ndenumerate(matrix):
            ax.text(c, r, int(value), ha="center", va="center", fontsize=7)
        ax.set_title(problem, fontsize=8)
        ax.set_xticks(range(len(names)), [n[:8] for n in names], rotation=45, fontsize=6)
        ax.set_yticks(range(len(names)), [n[:8] for n in names], fontsize=6)
    fig.tight_layout()
    fig.savefig(output / "confusion_matrices.png", dpi=100)
    plt.close(fig)
    written.append("confusion_matrices.png")
    return written


def _load_base(entry: Mapping[str, Any], folder: Path):
    if entry["modality"] == "text":
        return AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    return AutoModelForImageClassification.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)


def run_training(config: Mapping[str, Any]) -> TrainingReport:
    """Train base models, fit the modality ensemble, evaluate, and write the output folder.

    Config keys: ``data`` (:func:`hf_memotion.config.load_data`), ``output_dir``, ``seed``,
    ``n_splits``, ``holdout`` (evaluation share carved from ``train`` when there is no labelled test
    split), ``processes`` (refuse to run unless exactly this many processes were launched),
    ``models`` (a list: ``name``, ``modality``, ``layout`` (``"multitask"`` or the paper's
    ``"per_problem"``) and that recipe's settings) and ``stacking``
    (``methods``: candidates, or per problem; ``features``: ``"own"`` or ``"all"``; ``cv``).
    """
    check_keys(config, {"data", "output_dir", "seed", "n_splits", "holdout", "processes", "models", "stacking"})
    state = process_state()
    expected = config.get("processes")
    if expected is not None and int(expected) != state.num_processes:
        raise RuntimeError(
            f"the config asks for {expected} processes but {state.num_processes} were launched; on CPU use "
            "`accelerate launch --multi_gpu --num_processes N` with ACCELERATE_USE_CPU=1 (or torchrun)"
        )
    declared = list(config.get("models") or [])
    if not declared:
        raise ValueError("the config lists no base models under 'models'")
    names = [m.get("name") for m in declared]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"every model needs a unique name, got {names}")
    models = _expand(declared)
    seed = int(config.get("seed", 0))
    output = Path(config.get("output_dir", "outputs/run"))
    data = _split_holdout(load_data(config.get("data") or {"demo": {}}), float(config.get("holdout", 0.1)), seed)
    train_labels = {p: np.asarray(data["train"][p]) for p in PROBLEM_NAMES}
    test_labels = {p: np.asarray(data["test"][p]) for p in PROBLEM_NAMES}
    common = {"n_splits": int(config.get("n_splits", 5)), "seed": seed}
    results: dict[str, ClassifierRunResult] = {}
    for entry in models:
        logger.info("training base model %s (%s)", entry["name"], entry.get("modality"))
        results[entry["name"]] = _train_base_model(entry, data, output / "models" / entry["name"], common)
    stacking = dict(config.get("stacking") or {})
    check_keys(stacking, {"methods", "features", "cv"})
    stack_args = {
        "candidates": stacking.get("methods") or META_METHODS,
        "features": stacking.get("features", "own"),
        "cv": int(stacking.get("cv", 5)),
        "seed": seed,
    }
    oof = {name: r.oof_probabilities for name, r in results.items()}
    held_out = {name: r.test_probabilities for name, r in results.items()}
    rows = []  # one row per declared model (its per-problem models merged), as in Table 7
    for entry in declared:
        merged = {p: v for m in models if m["group"] == entry["name"] for p, v in held_out[m["name"]].items()}
        rows.append({"name": entry["name"], "modality": entry["modality"], "scores": _scores(merged, test_labels)})
    modalities = sorted({e["modality"] for e in models})
    for modality in modalities:
        members = [e["name"] for e in models if e["modality"] == modality]
        stackers = fit_stackers({m: oof[m] for m in members}, train_labels, **stack_args)
        final = _combine(stackers, {m: held_out[m] for m in members})
        rows.append({"name": f"ensemble ({modality})", "modality": modality, "scores": _scores(final, test_labels)})
    stackers = fit_stackers(oof, train_labels, **stack_args)
    final = _combine(stackers, held_out)
    rows.append({"name": "ensemble all (modality ensemble)", "modality": "all", "scores": _scores(final, test_labels)})
    table8 = {p: s.method for p, s in stackers.items()}
    report = TrainingReport(
        table7=rows,
        table8=table8,
        selection_scores={p: s.scores for p, s in stackers.items()},
        oof_scores={name: r.oof_scores for name, r in results.items()},
        settings={k: v for k, v in config.items() if k != "data"},
        n_train=len(data["train"]),
        n_test=len(data["test"]),
        data=data_provenance(data["train"]),
    )
    if state.is_main_process:
        ensemble_config = MemotionEnsembleConfig(
            problems=list(PROBLEM_NAMES),
            features=stack_args["features"],
            base_models=[
                {
                    "name": e["name"],
                    "modality": e["modality"],
                    "path": e["name"],
                    "problems": e["problems"],
                }
                for e in models
            ],
        )
        base = {e["name"]: _load_base(e, output / "models" / e["name"] / "model") for e in models}
        MemotionEnsembleModel(ensemble_config, base_models=base, stackers=stackers).save_pretrained(output / "ensemble")
        write_answer_file({p: final[p].argmax(-1) for p in PROBLEM_NAMES}, output / "answer.txt")
        plots = _plots(output, rows, final, test_labels)
        atomic_write_text(output / "report.json", json.dumps(report, indent=2, default=str))
        atomic_write_text(output / "report.md", render_report(report, plots))
        write_model_card(output / "ensemble", ensemble_card(report))
    state.wait_for_everyone()
    return report


def render_report(report: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """``report.md``: Table 7 and Table 8 in the paper's form, plus the plots."""
    lines = [
        "# Modality ensemble: results",
        "",
        f"Held-out evaluation on {report['n_test']} memes; base models and meta-estimators trained on "
        f"{report['n_train']} memes (meta-estimators on out-of-fold probabilities only).",
        "",
        "## Macro-F1 per subtask and emotion (the form of Table 7 of the Memotion paper)",
        "",
        format_table7(report["table7"]),
        "",
        "## Meta-estimator chosen per problem (Table 8)",
        "",
        "| problem | method |",
        "|---|---|",
        *[f"| {p} | {m} |" for p, m in report["table8"].items()],
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"
