"""HuBERT iterations: cluster, label, pretrain; then cluster a layer of that model, label, pretrain again.

Hsu et al. (2021) train HuBERT in iterations: iteration 1 predicts k-means clusters of MFCC
frames (39 dims with deltas, k = 100); iteration n >= 2 predicts k-means clusters of a middle
layer of iteration n-1's model (k = 500). :func:`run_iterations` runs that loop with every
iteration in its own directory, so nothing from an earlier iteration is ever overwritten::

    RUN/plan.yaml                  the IterationsConfig the run started with
    RUN/iter1/kmeans/              k-means dir (audiossl kmeans fit), with its quality report
    RUN/iter1/labels/              label dir of the training data (audiossl kmeans label): labels,
                                   frame_rate, quality report (PNMI against ``reference``), topics
    RUN/iter1/pretrain/            the pretraining run dir (checkpoints, logs, loss curve)
    RUN/iter1/summary.json         cluster quality and pretraining outcome of the iteration
    RUN/iter2/...                  the same, clustering block ``layer`` of iter1/pretrain
    RUN/summary.json, summary.txt  one row per iteration

Each stage writes a ``.complete`` marker when it has finished and is skipped when the marker
is there, so running the same command again continues where it stopped (an interrupted
pretraining is resumed from its newest checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audiossl.cluster.kmeans import KMeansConfig
from audiossl.cluster.pipeline import FitConfig, fit_kmeans_dir, label_with_kmeans_dir
from audiossl.config import override_item, to_dict
from audiossl.data.wav_scp import allowing_pipes
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write
from audiossl.train.checkpoint import latest_checkpoint
from audiossl.train.config import PretrainConfig, objective_config, plain, resolve_config
from audiossl.train.logging import read_records
from audiossl.train.trainer import pretrain

logger = logging.getLogger(__name__)

MARKER = ".complete"


@dataclass(kw_only=True)
class IterationSpec:
    """One iteration: what is clustered, into how many clusters, and how long its pretraining runs."""

    n_clusters: int = 100
    """Clusters k (HuBERT: 100 on MFCC, 500 on a layer)."""

    features: str = "mfcc"
    """Front-end clustered when ``layer`` is None (iteration 1: 39-dim MFCC with deltas)."""

    layer: int | None = None
    """Block of the previous iteration's encoder to cluster (1-based; HuBERT BASE: 6); None = ``features``."""

    max_steps: int | None = None
    """Pretraining steps of this iteration; None = ``run.max_steps`` of the pretraining config."""

    overrides: list[str] = field(default_factory=list)
    """``key=value`` settings of this iteration's pretraining only (after the run-wide ones)."""


def _hubert_plan() -> list[IterationSpec]:
    return [IterationSpec(n_clusters=100), IterationSpec(n_clusters=500, layer=6)]


@dataclass(kw_only=True)
class IterationsConfig:
    """A run of HuBERT iterations: the pretraining config, the clustering of each iteration, the reference."""

    pretrain: str = "hubert-conformer-tiny"
    """Preset name or YAML file of every iteration's pretraining (an objective that predicts cluster labels)."""

    overrides: list[str] = field(default_factory=list)
    """``key=value`` settings applied to every iteration's pretraining."""

    iterations: list[IterationSpec] = field(default_factory=_hubert_plan)
    """The iterations, in order; the first must cluster a front-end (``layer`` None)."""

    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    """k-means options of every iteration (its ``n_clusters`` is replaced by the iteration's)."""

    sample_fraction: float = 1.0
    """Fraction of the training utterances k-means is fitted on (every utterance is labelled)."""

    batch_seconds: float = 200.0
    """Padded seconds of audio per feature batch while clustering and labelling."""

    cache_gb: float = 4.0
    """Memory for keeping the first pass of k-means features (see FitConfig.cache_gb)."""

    reference: str | None = None
    """Reference labelling of the training data for PNMI and purity (``digit`` for utt2digit, ``spk``,
    or a table file); None = no reference measures."""

    label_option: str = "objective.config.labels"
    """Pretraining config key that receives the iteration's label dir(s)."""

    init_from_previous: bool = False
    """Start the pretraining of iteration n >= 2 from iteration n-1's weights (``run.init_from``; its cluster
    embeddings stay fresh, the new k differs). False = every iteration from scratch (HuBERT)."""

    def __post_init__(self) -> None:
        if not self.iterations:
            raise ConfigError("iterations: give at least one iteration")
        if self.iterations[0].layer is not None:
            raise ConfigError("iterations[0]: the first iteration clusters a front-end (layer must be null)")
        for number, spec in enumerate(self.iterations[1:], start=2):
            if spec.layer is None:
                raise ConfigError(f"iterations[{number - 1}]: iteration {number} needs the layer to cluster")


def flag_overrides(
    config: IterationsConfig,
    *,
    pretrain: str | None = None,
    overrides: list[str] | None = None,
    clusters: list[int] | None = None,
    layers: list[int] | None = None,
    steps: list[int] | None = None,
    reference: str | None = None,
) -> list[str]:
    """The ``--set`` items that the shortcut options of ``audiossl hubert iterate`` stand for, on ``config``.

    ``pretrain``/``reference`` replace those keys; ``overrides`` are added after the plan's;
    ``clusters`` gives k of each iteration and so their number (new ones cluster the layer of
    the last, 6 by default); ``layers`` (one for all, or one per iteration after the first) and
    ``steps`` (one per iteration) set those fields. Applied with
    :func:`audiossl.config.apply_overrides` like any other ``--set``.
    """
    sets = []
    if pretrain is not None:
        sets.append(override_item("pretrain", pretrain))
    if overrides:
        sets.append(override_item("overrides", [*config.overrides, *overrides]))
    if reference is not None:
        sets.append(override_item("reference", reference))
    specs = [to_dict(spec) for spec in config.iterations]
    if clusters:
        fresh = to_dict(IterationSpec(layer=config.iterations[-1].layer or 6))
        specs = [specs[i] if i < len(specs) else dict(fresh) for i in range(len(clusters))]
        for spec, k in zip(specs, clusters, strict=True):
            spec["n_clusters"] = k
    if layers:
        if len(layers) not in (1, len(specs) - 1):
            raise ConfigError(f"--layer: give one layer, or one per iteration after the first ({len(specs) - 1})")
        chosen = layers * (len(specs) - 1) if len(layers) == 1 else layers
        for spec, n in zip(specs[1:], chosen, strict=True):
            spec["layer"] = n
    if steps:
        if len(steps) != len(specs):
            raise ConfigError(f"--steps: give one value per iteration ({len(specs)})")
        for spec, n in zip(specs, steps, strict=True):
            spec["max_steps"] = n
    if clusters or layers or steps:
        sets.append(override_item("iterations", specs))
    return sets


@dataclass
class IterationsResult:
    """What a call did: the stages it ran (skipped ones are not listed) and each iteration's summary."""

    run_dir: Path
    ran: list[str]
    summaries: list[dict[str, Any]]
    stopped_by: str | None = None


def is_complete(path: Path) -> bool:
    """Whether the stage writing ``path`` finished."""
    return (path / MARKER).is_file()


def mark_complete(path: Path, info: dict[str, Any]) -> None:
    with atomic_write(path / MARKER) as handle:
        json.dump(info, handle, indent=1)
        handle.write("\n")


def label_dirs_for(iter_dir: Path, count: int) -> list[Path]:
    """Label dirs of an iteration for ``count`` data dirs: ``labels`` for one, ``labels/<i>`` for several."""
    return [iter_dir / "labels"] if count == 1 else [iter_dir / "labels" / str(i) for i in range(count)]


def run_iterations(
    config: IterationsConfig, data_dirs: list[str | Path], run_dir: str | Path, *, progress: bool = True
) -> IterationsResult:
    """Run (or continue) the iterations of ``config`` on ``data_dirs`` into ``run_dir`` (see the module doc).

    The pretraining config's ``data.allow_pipes: true`` allows wav.scp pipes in every stage (k-means too).
    """
    allow = resolve_config(config.pretrain, list(config.overrides)).data.allow_pipes
    with allowing_pipes(allow):
        return _run_iterations(config, data_dirs, run_dir, progress=progress)


def _run_iterations(
    config: IterationsConfig, data_dirs: list[str | Path], run_dir: str | Path, *, progress: bool = True
) -> IterationsResult:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    plan_path = run_dir / "plan.yaml"
    plan = yaml.safe_dump(plain(to_dict(config)), sort_keys=False)
    if not plan_path.is_file():
        with atomic_write(plan_path) as handle:
            handle.write(plan)
    elif plan_path.read_text(encoding="utf-8") != plan:
        logger.warning("this call's plan differs from %s: finished stages are kept as they are", plan_path)
    base = resolve_config(config.pretrain, list(config.overrides))
    train_dirs = [str(Path(d)) for d in data_dirs]
    labelled_dirs = train_dirs + [d for d in base.run.valid_data if d not in train_dirs]
    ran: list[str] = []
    summaries = []
    previous: Path | None = None
    for number, spec in enumerate(config.iterations, start=1):
        iter_dir = run_dir / f"iter{number}"
        kmeans_dir, pretrain_dir = iter_dir / "kmeans", iter_dir / "pretrain"
        label_dirs = label_dirs_for(iter_dir, len(labelled_dirs))
        if not is_complete(kmeans_dir):
            features = spec.features if spec.layer is None else _final_checkpoint(previous)
            fit = FitConfig(
                features=str(features),
                layer=spec.layer,
                sample_rate=base.data.sample_rate,
                sample_fraction=config.sample_fraction,
                batch_seconds=config.batch_seconds,
                cache_gb=config.cache_gb,
                kmeans=dataclasses.replace(config.kmeans, n_clusters=spec.n_clusters),
            )
            logger.info("iteration %d: k-means (k=%d) on %s", number, spec.n_clusters, _describe(spec))
            fit_kmeans_dir(train_dirs, kmeans_dir, fit, progress=progress)
            mark_complete(kmeans_dir, {"features": str(features), "layer": spec.layer})
            ran.append(f"iter{number}/kmeans")
        for data_dir, label_dir in zip(labelled_dirs, label_dirs, strict=True):
            if not is_complete(label_dir):
                logger.info("iteration %d: labelling %s", number, data_dir)
                reference = config.reference if data_dir == train_dirs[0] else None
                label_with_kmeans_dir(kmeans_dir, data_dir, label_dir, reference=reference, progress=progress)
                mark_complete(label_dir, {"data": data_dir})
                ran.append(f"iter{number}/{label_dir.relative_to(iter_dir)}")
        settings = _iteration_settings(config, spec, label_dirs)
        if config.init_from_previous and previous is not None:
            settings.run.init_from = str(previous)
        if not is_complete(pretrain_dir):
            topics = _topic_stage(settings, label_dirs)
            if topics is not None:
                ran.append(f"iter{number}/{topics.relative_to(iter_dir)}")
            resume = latest_checkpoint(pretrain_dir) is not None
            logger.info(
                "iteration %d: %s pretraining in %s", number, "resuming" if resume else "starting", pretrain_dir
            )
            result = pretrain(settings, train_dirs, pretrain_dir, resume=resume)
            ran.append(f"iter{number}/pretrain")
            if result.stopped_by is not None:
                return IterationsResult(run_dir, ran, summaries, result.stopped_by)
            mark_complete(pretrain_dir, {"step": result.step, "checkpoint": str(result.checkpoint)})
        summaries.append(write_iteration_summary(iter_dir, number, spec, label_dirs[0], pretrain_dir))
        previous = pretrain_dir
    write_run_summary(run_dir, summaries)
    return IterationsResult(run_dir, ran, summaries)


def _describe(spec: IterationSpec) -> str:
    return spec.features if spec.layer is None else f"block {spec.layer} of the previous model"


def _final_checkpoint(pretrain_dir: Path | None) -> Path:
    checkpoint = None if pretrain_dir is None else latest_checkpoint(pretrain_dir)
    if checkpoint is None:
        raise DataError("the previous iteration left no checkpoint to cluster", pretrain_dir)
    return checkpoint


def _iteration_settings(config: IterationsConfig, spec: IterationSpec, label_dirs: list[Path]) -> PretrainConfig:
    """The pretraining config of one iteration: run-wide overrides, its label dirs and steps, its own overrides."""
    labels = str(label_dirs[0]) if len(label_dirs) == 1 else json.dumps([str(d) for d in label_dirs])
    sets = [*config.overrides, f"{config.label_option}={labels}"]
    base = resolve_config(config.pretrain, list(config.overrides))
    if hasattr(objective_config(base), "num_clusters"):
        sets.append("objective.config.num_clusters=null")  # each iteration has its own k, read from its labels
    if spec.max_steps is not None:
        sets.append(f"run.max_steps={spec.max_steps}")
    return resolve_config(config.pretrain, [*sets, *spec.overrides])


def _topic_stage(settings: PretrainConfig, label_dirs: list[Path]) -> Path | None:
    """Fit the HuBERTopic topics beside the labels before pretraining, when the objective uses them.

    Returns the topics dir when it was fitted now (None when stored already or not used). The
    objective would fit them on its first batch too; fitting here keeps it out of the training
    processes and leaves the topics in place before the run starts.
    """
    topic = getattr(objective_config(settings), "topic", None)
    if topic is None:
        return None
    from audiossl.cluster.labels import read_labels
    from audiossl.data.targets import recorded_clusters
    from audiossl.data.topics import TOPIC_INFO, ensure_topics, topics_dir

    path = topics_dir(label_dirs[0], topic)
    existed = (path / TOPIC_INFO).is_file()
    labels: dict[str, Any] = {}
    for label_dir in label_dirs:
        labels.update(read_labels(label_dir)[0])
    n_clusters = getattr(objective_config(settings), "num_clusters", None) or recorded_clusters(label_dirs[0])
    if n_clusters is None:
        n_clusters = max(int(values.max()) for values in labels.values() if len(values)) + 1
    ensure_topics(label_dirs[0], labels, n_clusters, topic)
    return None if existed else path


def write_iteration_summary(
    iter_dir: Path, number: int, spec: IterationSpec, label_dir: Path, pretrain_dir: Path
) -> dict[str, Any]:
    """``iterN/summary.json``: cluster quality of the training labels and how the pretraining ended."""
    quality = json.loads((label_dir / "quality.json").read_text(encoding="utf-8"))
    records = read_records(pretrain_dir / "train.jsonl") if (pretrain_dir / "train.jsonl").is_file() else []
    train = [r for r in records if r.get("kind") == "train"]
    last = train[-1] if train else {}
    summary = {
        "iteration": number,
        "features": spec.features if spec.layer is None else f"layer {spec.layer}",
        "n_clusters": quality["n_clusters"],
        "frame_rate": quality.get("extra", {}).get("frame_rate"),
        "usage_perplexity": quality["usage_perplexity"],
        "unused_clusters": quality["unused_clusters"],
        "reference": quality.get("reference"),
        "pnmi": quality.get("pnmi"),
        "label_purity": quality.get("label_purity"),
        "cluster_purity": quality.get("cluster_purity"),
        "steps": last.get("step"),
        "first_loss": train[0]["loss"] if train else None,
        "last_loss": last.get("loss"),
        "masked_accuracy": last.get("metrics", {}).get("masked_accuracy"),
        "checkpoint": str(latest_checkpoint(pretrain_dir)),
    }
    with atomic_write(iter_dir / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
        handle.write("\n")
    return summary


def write_run_summary(run_dir: Path, summaries: list[dict[str, Any]]) -> None:
    """``summary.json`` (every iteration) and ``summary.txt`` (a table) of the run."""
    with atomic_write(run_dir / "summary.json") as handle:
        json.dump(summaries, handle, indent=1)
        handle.write("\n")
    with atomic_write(run_dir / "summary.txt") as handle:
        handle.write(summary_table(summaries))


def summary_table(summaries: list[dict[str, Any]]) -> str:
    """One aligned text row per iteration."""

    def fmt(value: Any, spec: str = ".3f") -> str:
        return "n/a" if value is None else format(value, spec) if isinstance(value, float) else str(value)

    header = ["iter", "features", "k", "usage ppl", "PNMI", "label purity", "steps", "loss", "masked acc"]
    rows = [
        [
            fmt(s["iteration"]),
            s["features"],
            fmt(s["n_clusters"]),
            fmt(s["usage_perplexity"], ".1f"),
            fmt(s["pnmi"]),
            fmt(s["label_purity"]),
            fmt(s["steps"]),
            f"{fmt(s['first_loss'])} -> {fmt(s['last_loss'])}",
            fmt(s["masked_accuracy"]),
        ]
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines) + "\n"
