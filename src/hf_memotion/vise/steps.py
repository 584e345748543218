"""The three VisE steps as library calls: :func:`mine`, :func:`pretrain`, :func:`evaluate`, each taking its spec.

The scripts (``mine_vise_labels.py``, ``pretrain_vise.py``, ``evaluate_vise.py``) only parse a config into the
spec and call one of these; each also has a ``print_*`` summary, what the script shows when it ends.

Examples:
    >>> from hf_memotion.vise.run_specs import MiningRunSpec
    >>> spec = MiningRunSpec.from_dict({"data": {"demo": {"output_dir": "/tmp/hf_memotion_doc_posts", "n_posts": 200}},
    ...                                 "output_dir": "/tmp/hf_memotion_doc_mined",
    ...                                 "mining": {"comment_clusters": 8, "reaction_clusters": 4, "embedding_dim": 8}})
    >>> report = mine(spec)
    >>> report["comment_cluster_sizes"]["clusters"], report["reaction_cluster_sizes"]["clusters"]
    (8, 4)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_memotion.config import load_run_config
from hf_memotion.data.engagement import resolve_corpus
from hf_memotion.distributed import process_state
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.vise.run_specs import EvaluationRunSpec, MiningRunSpec, PretrainRunSpec, TaskSpec

__all__ = [
    "EvaluationPlan",
    "evaluate",
    "mine",
    "plan_evaluation",
    "pretrain",
    "print_evaluation_plan",
    "print_evaluation_summary",
    "print_mining_summary",
    "print_pretraining_summary",
    "read_tasks",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- mining


def mine(spec: MiningRunSpec) -> dict[str, Any]:
    """Mine the pseudo-labels a :class:`MiningRunSpec` describes, on this machine or as a Spark job.

    Returns:
        The report written to ``mining.json``.
    """
    from hf_memotion.vise.mining import mine_labels

    corpus = resolve_corpus(spec.data)
    if spec.engine == "spark":
        from hf_memotion.vise.spark_mining import mine_labels_on_spark

        return mine_labels_on_spark(
            corpus, spec.output_dir, spec.mining, cores=spec.num_proc or 2, memory=spec.spark_memory
        )
    return mine_labels(corpus, spec.output_dir, spec.mining, num_proc=spec.num_proc or 1)


def _sizes(stats: dict) -> str:
    return (
        f"{stats['non_empty']}/{stats['clusters']} used, size min {stats['min']} median {stats['median']:g} "
        f"max {stats['max']}, largest share {stats['largest_share']:.1%}, "
        f"effective clusters {stats['effective_clusters']:.1f}"
    )


def print_mining_summary(report: dict[str, Any], spec: MiningRunSpec) -> None:
    """Print the counts and the cluster-size statistics of a mining run."""
    print(
        f"labelled {report['posts_labelled']} posts ({report['holdout']['holdout_posts']} held out for clustering); "
        f"{report['posts_without_comments']} without comments, {report['posts_without_reactions']} without "
        f"reactions, {report['malformed_rows']} malformed rows skipped"
    )
    extra = ", ".join(f"{k} ({n} posts)" for k, n in sorted(report.get("extra_reaction_keys", {}).items()))
    print(
        f"{report.get('comments_without_signal', 0)} sampled comments without a known word or emoji (no cluster); "
        f"{report.get('posts_without_comment_signal', 0)} posts whose comments all lacked one; extra reaction keys "
        f"ignored: {extra or 'none'} ({report.get('engine', 'local')} engine)"
    )
    print("comment clusters: " + _sizes(report["comment_cluster_sizes"]))
    print("reaction clusters: " + _sizes(report["reaction_cluster_sizes"]))
    print(f"labels: {spec.output_dir}/labels-*.parquet  report: {spec.output_dir}/mining.json")


# ------------------------------------------------------------------------------------------------- pretraining


def _labels(spec: PretrainRunSpec) -> str:
    """The labels folder: given, or mined first from the named mining config (one process mines)."""
    if spec.data.labels is not None:
        return spec.data.labels
    mining = MiningRunSpec.from_dict(load_run_config(spec.data.mine), source=spec.data.mine)
    state = process_state()
    with state.main_process_first():  # one process mines; the others then find it finished
        if state.is_main_process:
            mine(mining)
    return mining.output_dir


def pretrain(spec: PretrainRunSpec) -> dict[str, Any]:
    """Pretrain the VisE backbone a :class:`PretrainRunSpec` describes (mining first when asked); plot the losses.

    Returns:
        The report written to ``pretraining.json``.
    """
    from hf_memotion.vise.pretraining import plot_pretraining_curves, pretrain_vise

    output = Path(spec.output_dir)
    report = pretrain_vise(_labels(spec), output, spec.pretraining, resume=spec.resume, license=spec.license)
    if process_state().is_main_process:
        plot_pretraining_curves(report["curves"], output / "loss_curves.png")
    return report


def print_pretraining_summary(report: dict[str, Any], spec: PretrainRunSpec) -> None:
    """Print the first and last values of both losses and where the backbone is."""
    curves = report["curves"]
    if curves:
        first, last = curves[0], curves[-1]
        for name in ("loss", "comment_loss", "reaction_loss"):
            if name in first and name in last:
                print(f"{name:<14} {first[name]:.4f} (step {first['step']}) -> {last[name]:.4f} (step {last['step']})")
    output = Path(spec.output_dir)
    print(f"backbone: {output / 'backbone'}  (AutoModel.from_pretrained)   report: {output / 'pretraining.json'}")


# ------------------------------------------------------------------------------------------------- evaluation


def read_tasks(entries: list[TaskSpec], selection: str = "held_out") -> list[tuple[Any, TaskSpec]]:
    """``(DownstreamTask, its TaskSpec)`` for each task entry (demo tasks are generated first).

    ``selection`` reaches the readers that have a choice (Hateful Memes, CUB).
    """
    import inspect

    from hf_memotion.data.downstream import TASK_READERS, read_task
    from hf_memotion.data.downstream_demo import make_demo_downstream

    tasks = []
    for entry in entries:
        root = entry.path
        if entry.demo is not None:
            demo = dict(entry.demo)
            root = make_demo_downstream(
                demo.pop("output_dir", f"outputs/vise_tasks_demo/{entry.format}"), entry.format, **demo
            )
        options = dict(entry.options)
        reader = TASK_READERS.get(str(entry.format))
        if reader is not None and "selection" in inspect.signature(reader).parameters:
            options.setdefault("selection", selection)
        task = read_task(entry.format, root, **options)
        task.name = entry.name or task.name
        tasks.append((task, entry))
    return tasks


def _display_name(task: str, setting: str, has_text: bool) -> str:
    """The task's name in the tables: a multi-modal task's non-default settings are named."""
    if not has_text or setting == "image_text_frozen":
        return task
    return f"{task} ({setting.replace('_', ' ')})"


def evaluate(spec: EvaluationRunSpec, *, source: str | None = None) -> dict[str, Any]:
    """Run every task x setting x backbone x protocol grid of an :class:`EvaluationRunSpec` and write the report.

    Writes ``results.json`` (every grid point, the chosen one, S_lr and S_wd), ``results.md`` (Tables 6/7-style
    scores and the hyperparameter tables in the form of Tables 10-16), ``results.png`` and ``grids.png``. Finished
    grid points are reused.

    Returns:
        ``rows`` (one per task, setting, backbone and protocol) and ``markdown`` (the report without the plots).
    """
    from hf_memotion.reporting.vise_tables import hyperparameter_table, plot_grids, plot_results, results_table
    from hf_memotion.vise.evaluation import TextEncoder, evaluate_backbone, load_backbone

    backbones = [
        load_backbone(n, b.source, image_size=spec.image_size, pretrained_file=b.pretrained_file, device=spec.device)
        for n, b in spec.backbones.items()
    ]
    logger.info("VisE protocols on %s", backbones[0].model.device if backbones else spec.device)
    output = Path(spec.output_dir)
    rows = []
    for task, entry in read_tasks(spec.tasks, spec.selection):
        encoder = None
        combinations = spec.combinations(entry, task.has_text)
        if any(setting != "image_only" for setting, _ in combinations):
            if not entry.text_encoder:
                raise ValueError(f"task {task.name!r} has texts: set its text_encoder (a folder or Hub id)")
            encoder = TextEncoder(str(entry.text_encoder), corpus=task.repeats[0]["train"]["text"], device=spec.device)
        for backbone in backbones:
            for setting, protocol in combinations:
                settings = spec.protocol_settings(protocol, entry, backbone.name, backbone.model.config.architecture)
                row = evaluate_backbone(
                    backbone,
                    task,
                    protocol,
                    settings,
                    output,
                    encoder,
                    setting=setting,
                    linear_features=spec.linear_features,
                    decode_workers=int(spec.decode_workers),
                )
                row["task"] = _display_name(task.name, setting, task.has_text)
                row["selection"] = spec.selection
                logger.info(
                    "%s / %s / %s: test %s %.4g (chosen base LR %g, WD %g; S_lr %.4g, S_wd %.4g)",
                    row["task"],
                    backbone.name,
                    protocol,
                    row["metric"],
                    row[f"test_{row['metric']}_mean"],
                    row["base_lr"],
                    row["weight_decay"],
                    row["s_lr"],
                    row["s_wd"],
                )
                rows.append(row)
    atomic_write_text(output / "results.json", json.dumps(rows, indent=2))
    title = "# VisE downstream evaluation\n"
    notes = [
        f"Config: `{source}`." if source else "",
        f"Selection: `{spec.selection}`; linear features: `{spec.linear_features}`.",
    ]
    if spec.reference:
        notes.append(f"Differences from `{spec.reference}` in parentheses.")
    sections = [title + "\n" + " ".join(n for n in notes if n) + "\n"]
    for heading, protocol in (
        ("Linear evaluation (Table 6 form)", "linear"),
        ("Fine-tuning (Table 7 form)", "finetune"),
    ):
        if any(r["protocol"] == protocol for r in rows):
            sections.append(f"## {heading}\n\n" + results_table(rows, protocol, spec.reference) + "\n")
    sections.append("## Chosen hyperparameters and sensitivity (Tables 10-16 form)\n\n" + hyperparameter_table(rows))
    markdown = "\n".join(sections)
    atomic_write_text(output / "results.md", markdown + "\n\n![results](results.png)\n\n![grids](grids.png)\n")
    plot_results(rows, output / "results.png")
    plot_grids(rows, output / "grids.png")
    return {"rows": rows, "markdown": markdown}


@dataclass
class EvaluationPlan:
    """What :func:`evaluate` would run: every grid point with its schedule (``scripts/evaluate_vise.py --plan``).

    Attributes:
        points: One dict per task x setting x backbone x protocol x grid point: ``task``, ``setting``,
            ``backbone``, ``architecture``, ``protocol``, ``batch_size``, ``epochs``, ``schedule``, ``lr_epochs``,
            ``lr_decay``, ``optimizer``, ``features``, ``base_lr``, ``weight_decay``, ``learning_rate``, ``splits``.
        selection: The run's selection mode.
    """

    points: list[dict[str, Any]]
    selection: str

    def format(self) -> str:
        """One row per task x setting x backbone x protocol (its grid spelled out), then the totals."""
        lines = [
            "| task | setting | backbone | architecture | protocol | batch | schedule | optimizer | features | "
            "splits | grid: base LR -> LR, x WD |",
            "|---|---|---|---|---|---:|---|---|---|---:|---|",
        ]
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for point in self.points:
            key = tuple(point[k] for k in ("task", "setting", "backbone", "protocol"))
            groups.setdefault(key, []).append(point)
        for (task, setting, backbone, protocol), points in groups.items():
            first = points[0]
            rates = dict.fromkeys(f"{p['base_lr']:g} -> {p['learning_rate']:.3g}" for p in points)
            decays = dict.fromkeys(f"{p['weight_decay']:g}" for p in points)
            lines.append(
                f"| {task} | {setting} | {backbone} | {first['architecture'] or '?'} | {protocol} | "
                f"{first['batch_size']} | {first['schedule']} | {first['optimizer']} | {first['features']} | "
                f"{first['splits']} | {'; '.join(rates)} x WD {', '.join(decays)} |"
            )
        trainings = sum(p["splits"] for p in self.points)
        lines += [
            "",
            f"{len(groups)} evaluations, {len(self.points)} grid points, {trainings} trainings "
            f"(grid points x random splits); selection: {self.selection}",
        ]
        return "\n".join(lines)


def plan_evaluation(spec: EvaluationRunSpec, *, source: str | None = None) -> EvaluationPlan:
    """Every task x setting x backbone x protocol x grid point an evaluation config would run; reads no data.

    Examples:
        >>> spec = EvaluationRunSpec.from_dict({"backbones": {"r50": "random:resnet50"}, "protocols": ["finetune"],
        ...     "tasks": [{"format": "politics", "path": "data/politics", "schedule": {"epochs": 25,
        ...                "lr_epochs": [10, 20], "lr_decay": 0.1}, "batch_sizes": {"resnet50": 192}}]})
        >>> point = plan_evaluation(spec).points[0]
        >>> point["batch_size"], point["schedule"], round(point["learning_rate"], 6)  # 0.025 / 256 x 192
        (192, '25 epochs, x0.1 at epochs 10, 20', 0.01875)
    """
    from hf_memotion.data.downstream import FORMATS_WITH_TEXT

    points = []
    for entry in spec.tasks:
        has_text = entry.format in FORMATS_WITH_TEXT
        splits = int(entry.options.get("n_splits", 5 if entry.format == "unbiased_emotion" else 1))
        for name, backbone in spec.backbones.items():
            architecture = backbone.resolved_architecture()
            for setting, protocol in spec.combinations(entry, has_text):
                settings = spec.protocol_settings(protocol, entry, name, architecture)
                adamw = settings.uses_adamw(multimodal=setting != "image_only")
                for wd in settings.weight_decays:
                    for base in settings.base_learning_rates:
                        points.append(
                            {
                                "task": _display_name(entry.label, setting, has_text),
                                "setting": setting,
                                "backbone": name,
                                "architecture": architecture,
                                "protocol": protocol,
                                "batch_size": settings.batch_size,
                                "epochs": settings.epochs,
                                "schedule": settings.describe_schedule(),
                                "lr_epochs": settings.lr_epochs,
                                "lr_decay": settings.lr_decay,
                                "optimizer": "adamw" if adamw else "sgd",
                                "features": spec.linear_features if protocol == "linear" else "end to end",
                                "base_lr": base,
                                "weight_decay": wd,
                                "learning_rate": settings.learning_rate(base),
                                "splits": splits,
                            }
                        )
    return EvaluationPlan(points, spec.selection)


def print_evaluation_plan(plan: EvaluationPlan) -> None:
    """Print :meth:`EvaluationPlan.format`."""
    print(plan.format())


def print_evaluation_summary(result: dict[str, Any], spec: EvaluationRunSpec) -> None:
    """Print the report's tables and where its files are."""
    output = Path(spec.output_dir)
    print(result["markdown"])
    print(f"\nresults: {output / 'results.md'}  {output / 'results.json'}  plots: {output / 'results.png'}, grids.png")
