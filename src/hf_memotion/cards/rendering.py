"""Rendering model cards: the ``README.md`` of every saved model folder, offline, from a model's card data.

The templates live in the repository's ``model_cards/`` (Jinja; ``hf_memotion/model_cards`` links there, so
the package ships them) and are
rendered with :meth:`huggingface_hub.ModelCard.from_template`, whose YAML front matter comes from
:class:`huggingface_hub.ModelCardData`: ``library_name``, ``pipeline_tag``, ``tags``, ``license``,
``base_model``, ``datasets`` (when the data is a Hub dataset), ``metrics`` and a ``model-index`` with
the run's held-out scores. Nothing here touches the network.

Examples:
    >>> from hf_memotion.cards import base_model_card
    >>> card = base_model_card({"card": {"label": "text", "pipeline_tag": "text-classification"},
    ...                         "problems": ["sentiment"], "test_scores": {"sentiment": 0.5},
    ...                         "oof_scores": {"sentiment": 0.4}})
    >>> card.data.pipeline_tag, card.data.eval_results[0].metric_value
    ('text-classification', 0.5)
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_memotion.hub.publishing import MODEL_ID_PLACEHOLDER
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.metrics.tables import format_table7
from hf_memotion.tasks import EMOTIONS, PROBLEM_NAMES, get_problem

__all__ = [
    "CITATIONS",
    "MODEL_ID_PLACEHOLDER",
    "TEMPLATES",
    "base_model_card",
    "ensemble_card",
    "framework_versions",
    "score_name",
    "vise_card",
    "write_model_card",
]

#: Folder of the Jinja templates (package data).
TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"

#: BibTeX of the two papers this library implements; every card cites both.
CITATIONS = {
    "memotion": """@inproceedings{morishita-etal-2020-hitachi,
  title     = {Hitachi at {SemEval}-2020 Task 8: Simple but Effective Modality Ensemble for Meme Emotion Recognition},
  author    = {Morishita, Terufumi and Morio, Gaku and Horiguchi, Shota and Ozaki, Hiroaki and Miyoshi, Toshinori},
  booktitle = {Proceedings of the Fourteenth Workshop on Semantic Evaluation (SemEval-2020)},
  year      = {2020}
}""",
    "vise": """@inproceedings{jia2021vise,
  title     = {Exploring Visual Engagement Signals for Representation Learning},
  author    = {Jia, Menglin and Wu, Zuxuan and Reiter, Austin and Cardie, Claire and Belongie, Serge and Lim, Ser-Nam},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021}
}""",
}


_FRAMEWORKS = ("hf-memotion", "torch", "transformers", "timm", "datasets", "accelerate", "scikit-learn", "skops")
_DEMO = "hf-memotion-demo"
_TAGS = ["hf-memotion", "memotion", "semeval-2020-task-8", "memes", "emotion-analysis"]
_TASK_NAME = "Meme emotion analysis (Memotion)"


def framework_versions() -> dict[str, str]:
    """Installed versions of the libraries a saved model depends on (``"not installed"`` if absent)."""
    versions = {}
    for name in _FRAMEWORKS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def score_name(key: str) -> str:
    """A readable name for a key of :func:`hf_memotion.metrics.memotion_scores`.

    Examples:
        >>> score_name("subtask_a"), score_name("humour_intensity")
        ('Macro-F1, subtask A (sentiment)', 'Macro-F1, humour intensity (subtask C)')
    """
    fixed = {
        "subtask_a": "Macro-F1, subtask A (sentiment)",
        "subtask_b": "Macro-F1, subtask B (mean over the four emotions)",
        "subtask_c": "Macro-F1, subtask C (mean over the four intensities)",
        "sentiment": "Macro-F1, sentiment (subtask A)",
    }
    if key in fixed:
        return fixed[key]
    if key in EMOTIONS:
        return f"Macro-F1, {key} (subtask B)"
    return f"Macro-F1, {key.replace('_', ' ')} (subtask C)"


def _data(info: Mapping[str, Any] | None) -> tuple[str, str]:
    info = info or {}
    name = info.get("name") or "unknown"
    description = info.get("description") or "Data not recorded by the run (loaded without provenance)."
    return name, description


def _eval_results(scores: Mapping[str, float], task_type: str, data_name: str, split: str) -> list[EvalResult]:
    pretty = "hf-memotion synthetic demo memes" if data_name == _DEMO else f"Memotion ({data_name})"
    return [
        EvalResult(
            task_type=task_type,
            task_name=_TASK_NAME,
            dataset_type=data_name,
            dataset_name=pretty,
            dataset_split=split,
            metric_type="f1",
            metric_name=score_name(key),
            metric_value=float(value),
            metric_args={"average": "macro"},
        )
        for key, value in scores.items()
        if not (key == "sentiment" and "subtask_a" in scores)  # the same number twice
    ]


def _facts(info: Mapping[str, Any]) -> dict[str, Any]:
    """What a card states about a member beyond its scores, under ``card``.

    Its model class's wording (``card_defaults``) under its family's training-time facts (``network``,
    ``base_model``, ``pretrained``); defaults where neither said.
    """
    facts = {
        "label": "base",
        "pipeline_tag": "image-classification",
        "summary": "a network with one classification head per problem",
        "auto_model": "AutoModel",
        "auto_preprocessor": "AutoProcessor",
        "network": "see config.json",
        "base_model": None,
        "pretrained": "see config.json",
    }
    return {**facts, **{k: v for k, v in (info.get("card") or {}).items() if v is not None or k == "base_model"}}


def _compact(values: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (values or {}).items()) or "the recipe's defaults"


def _license(license: str) -> dict[str, Any]:
    return {"license": license} if license else {}


def _render(template: str, data: ModelCardData, **values: Any) -> ModelCard:
    values["model_name"] = data.model_name  # to_dict() moves it into model-index
    return ModelCard.from_template(data, template_path=str(TEMPLATES / template), **values)


def _bf16_check(check: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The card's precision paragraph from the run's held-out bf16 check (``None``: not run)."""
    if not check:
        return None
    changes = check.get("macro_f1_change") or {}
    return {
        "changes": ", ".join(f"{changes[k]:+.4f}" for k in ("subtask_a", "subtask_b", "subtask_c") if k in changes),
        "rows": check.get("rows"),
        "passed": bool(check.get("passed")),
        "speed": ", ".join(
            f"{float(timing['speedup']):.2f}x fp32's speed on {device}"
            for device, timing in sorted((check.get("speed") or {}).items())
        ),
    }


def ensemble_card(report: Mapping[str, Any], *, model_id: str | None = None, license: str = "apache-2.0") -> ModelCard:
    """The card of a modality-ensemble folder, from ``report.json`` of :func:`~hf_memotion.training.run_training`.

    Args:
        report: The run's report (``table7``, ``table8``, ``settings``, ``n_train``, ``n_test``, ``data``).
        model_id: Hub id the folder will be published as (used in the usage snippet).
        license: SPDX-style license id for the card's metadata.

    Returns:
        A :class:`huggingface_hub.ModelCard`; its ``model-index`` holds the last Table 7 row (the
        modality ensemble) on the held-out split.
    """
    settings = report.get("settings", {})
    models = list(settings.get("models", []))
    members = {m["name"]: _facts({"card": (report.get("members") or {}).get(m["name"])}) for m in models}
    final = report["table7"][-1]
    data_name, data_description = _data(report.get("data"))
    base_models = sorted({hub for facts in members.values() if (hub := facts["base_model"])})
    data = ModelCardData(
        model_name=f"Memotion modality ensemble ({', '.join(m['name'] for m in models)})",
        library_name="hf-memotion",
        pipeline_tag="image-classification",
        tags=[*_TAGS, "multimodal", "ensemble", "stacking"],
        datasets=[data_name] if "/" in data_name else None,
        base_model=base_models or None,
        metrics=["f1"],
        eval_results=_eval_results(final["scores"], "image-classification", data_name, "held-out"),
        **_license(license),
    )
    stacking = settings.get("stacking", {})
    methods = stacking.get("methods") or "all supported methods"
    return _render(
        "ensemble.md",
        data,
        model_id=model_id or MODEL_ID_PLACEHOLDER,
        sentiment_labels=", ".join(get_problem("sentiment").labels),
        data_description=data_description,
        n_train=report.get("n_train"),
        n_test=report.get("n_test"),
        n_splits=settings.get("n_splits", 5),
        stacking_methods=", ".join(methods) if isinstance(methods, list) else str(methods),
        stacking_features=stacking.get("features", "own"),
        base_models=[
            {
                "name": m["name"],
                "family": members[m["name"]]["label"],
                "network": members[m["name"]]["network"],
                "problems": "all nine"
                if not m.get("problems") or set(m["problems"]) == set(PROBLEM_NAMES)
                else ", ".join(m["problems"]),
                "pretrained": members[m["name"]]["pretrained"],
                "hyperparameters": _compact(m.get("training"))
                + (f"; layout={m['layout']}" if m.get("layout") not in (None, "multitask") else "")
                + (f"; model: {_compact(m.get('model'))}" if m.get("model") else ""),
            }
            for m in models
        ],
        table8=report.get("table8", {}),
        calibration=report.get("calibration") or {},
        table7=format_table7(report["table7"], (report.get("protocol") or {}).get("table7_columns", "release")),
        bf16_check=_bf16_check(report.get("bf16_check")),
        is_demo=data_name == _DEMO,
        framework_versions=framework_versions(),
        citations="\n\n".join(CITATIONS.values()),
    )


def base_model_card(
    metrics: Mapping[str, Any], *, name: str = "model", model_id: str | None = None, license: str = "apache-2.0"
) -> ModelCard:
    """The card of a base-model folder, from the run's ``metrics.json`` (settings and scores).

    Args:
        metrics: ``card`` (what the model class and its family state: ``label``, ``pipeline_tag``, ``summary``,
            ``auto_model``, ``auto_preprocessor``, ``network``, ``base_model``, ``pretrained``), ``problems``,
            ``training``, ``test_scores``, ``oof_scores``, ``n_rows``, ``n_splits`` (a cross-validated recipe run),
            ``data``; from a training with :class:`~hf_memotion.training.MemotionTrainer`: ``eval_metrics`` (its last
            evaluation) and ``train_summary`` (steps, epochs, final loss).
        name: The model's name in its recipe.
        model_id: Hub id the folder will be published as (used in the usage snippet).
        license: SPDX-style license id for the card's metadata.
    """
    facts = _facts(metrics)
    problems = list(metrics.get("problems") or [])
    test = metrics.get("test_scores") or {}
    oof = metrics.get("oof_scores") or {}
    data_name, data_description = _data(metrics.get("data"))
    task = facts["pipeline_tag"]
    hub = facts["base_model"]
    evaluation = dict(metrics.get("eval_metrics") or {})
    validation = {p: evaluation[f"eval_f1_{p}"] for p in problems if f"eval_f1_{p}" in evaluation}
    data = ModelCardData(
        model_name=f"Memotion {facts['label']} base model: {name}",
        library_name="hf-memotion",
        pipeline_tag=task,
        tags=[*_TAGS, task],
        datasets=[data_name] if "/" in data_name else None,
        base_model=hub,
        metrics=["f1"],
        eval_results=_eval_results({p: test[p] for p in problems if p in test}, task, data_name, "held-out")
        or _eval_results(validation, task, data_name, "validation")
        or None,
        **_license(license),
    )
    hyper = dict(metrics.get("training") or {})
    hyper.update({f"model.{k}": v for k, v in (metrics.get("model") or {}).items()})
    if "ten_crop" in metrics:
        hyper["ten_crop"] = metrics["ten_crop"]
    return _render(
        "base_model.md",
        data,
        model_id=model_id or MODEL_ID_PLACEHOLDER,
        family=facts["label"],
        architecture_summary=facts["summary"],
        n_problems=len(problems),
        problems=", ".join(problems),
        auto_model=facts["auto_model"],
        auto_preprocessor=facts["auto_preprocessor"],
        data_description=data_description,
        n_rows=metrics.get("n_rows", "?"),
        n_splits=metrics.get("n_splits"),
        train_summary={k: v for k, v in (metrics.get("train_summary") or {}).items() if v is not None},
        eval_metrics=evaluation,
        weighted_loss=", with class-weighted cross-entropy" if metrics.get("weighted_loss", True) else "",
        hyperparameters=hyper,
        selection=metrics.get("selection"),
        test_time=metrics.get("test_time", "refit"),
        results=[
            {
                "problem": p,
                "test": f"{test[p]:.3f}" if p in test else "-",
                "oof": f"{oof[p]:.3f}" if p in oof else "-",
            }
            for p in problems
        ],
        has_test=bool(test),
        is_demo=data_name == _DEMO,
        framework_versions=framework_versions(),
        citations="\n\n".join(CITATIONS.values()),
    )


#: License of the released VisE checkpoints (and so of any conversion of them).
RELEASED_VISE_LICENSE = "cc-by-nc-4.0"


def vise_card(info: Mapping[str, Any], *, model_id: str | None = None, license: str | None = None) -> ModelCard:
    """The card of a VisE backbone folder: converted from a released checkpoint, or pretrained here.

    Args:
        info: ``origin`` (``"released"`` or ``"pretrained"``), ``architecture``, ``num_features``; for released
            weights ``checkpoint`` (file name); for pretrained ones the ``pretraining.json`` report fields
            (``settings``, ``posts``, ``comment_clusters``, ``reaction_clusters``, ``curves``, ``demo``).
        model_id: Hub id the folder will be published as (used in the usage snippet).
        license: License id; released weights are always ``cc-by-nc-4.0`` (their license).

    Examples:
        >>> card = vise_card({"origin": "released", "architecture": "resnet50", "num_features": 2048,
        ...                   "checkpoint": "resnet50_1m.pth"})
        >>> card.data.license, card.data.pipeline_tag
        ('cc-by-nc-4.0', 'image-feature-extraction')
    """
    released = info.get("origin") == "released"
    if released:
        license = RELEASED_VISE_LICENSE
        origin = (
            f"Converted by `hf_memotion.models.vise.convert_released_checkpoint` from the authors' released "
            f"checkpoint `{info.get('checkpoint', 'resnet50')}` (a torchvision ResNet-50 without pooling and "
            "classifier), every key and shape checked: the feature map equals the original's."
        )
        note = (
            "The released VisE weights are licensed **CC-BY-NC 4.0** (attribution, non-commercial use only); "
            "this conversion keeps that license."
        )
    else:
        license = license or "other"
        origin = (
            f"Pretrained with `scripts/pretrain_vise.py` on {info.get('posts', '?')} posts' mined labels "
            f"({info.get('comment_clusters', '?')} comment clusters, {info.get('reaction_clusters', '?')} "
            f"reaction clusters), {info.get('max_steps', '?')} steps at peak learning rate "
            f"{info.get('peak_learning_rate', '?')}."
        )
        note = (
            "These weights were trained by this library's user; they carry the terms of the engagement data "
            f"they were trained on (declared here as `{license}`)."
        )
        if info.get("demo"):
            note = f"Pretrained on hf-memotion's synthetic demo corpus (no third-party data); `{license}`."
    curves = [c for c in info.get("curves") or [] if "comment_loss" in c and "reaction_loss" in c]
    losses = None
    if curves:
        losses = {
            "first_step": curves[0]["step"],
            "last_step": curves[-1]["step"],
            "comment_first": f"{curves[0]['comment_loss']:.4f}",
            "comment_last": f"{curves[-1]['comment_loss']:.4f}",
            "reaction_first": f"{curves[0]['reaction_loss']:.4f}",
            "reaction_last": f"{curves[-1]['reaction_loss']:.4f}",
        }
    architecture = info.get("architecture", "resnet50")
    data = ModelCardData(
        model_name=f"VisE {architecture}" + (" (released weights)" if released else ""),
        library_name="hf-memotion",
        pipeline_tag="image-feature-extraction",
        tags=["hf-memotion", "vise", "visual-engagement", "image-feature-extraction", "timm"],
        **_license(license),
    )
    hyper = {k: v for k, v in (info.get("settings") or {}).items() if v not in (None, {}, [])} if not released else {}
    return _render(
        "vise.md",
        data,
        model_id=model_id or MODEL_ID_PLACEHOLDER,
        architecture=architecture,
        num_features=info.get("num_features", "features"),
        origin=origin,
        hyperparameters=hyper,
        losses=losses,
        license_note=note,
        is_demo=bool(info.get("demo")),
        framework_versions=framework_versions(),
        citations=CITATIONS["vise"],
    )


def write_model_card(folder: str | os.PathLike, card: ModelCard) -> Path:
    """Write ``card`` as ``folder/README.md`` atomically and return the path."""
    path = Path(folder) / "README.md"
    atomic_write_text(path, str(card))
    return path
