"""Pretraining set-up of what objectives predict and where they start from: targets on batches, run.init_from.

An objective declares the targets it reads from ``batch.targets``
(:meth:`~audiossl.objectives.Objective.target_specs`); :func:`attach_targets` resolves those
declarations once, at build time, into target sources of the data layer
(:mod:`audiossl.data.targets`), measuring the encoder's token clock from the input pipeline,
fitting HuBERTopic topics beside the labels when asked, and hands them to every dataset of the
run, which attaches them to each utterance cropped with its audio. :func:`init_objective`
is ``run.init_from``: the weights of another run (a previous iteration) loaded before training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.cluster.labels import read_labels
from audiossl.data.targets import (
    FrameLabelSpec,
    FrameTargets,
    TableRowSpec,
    TargetSource,
    TokenClock,
    TopicSpec,
    UtteranceTargets,
    table_rows,
)
from audiossl.data.topics import Topics, ensure_topics
from audiossl.errors import ConfigError, DataError
from audiossl.models.checkpoint import init_from_checkpoint, is_audiossl_checkpoint
from audiossl.objectives import Objective

logger = logging.getLogger(__name__)


def token_clock(objective: Objective, inputs: nn.Module, max_seconds: float) -> TokenClock:
    """The encoder's token counts of waveforms up to ``max_seconds`` through ``inputs`` (its ``output_lengths``)."""
    sample_rate = int(inputs.config.sample_rate)

    def tokens_of(samples: torch.Tensor) -> torch.Tensor:
        return objective.encoder.token_lengths(inputs.output_lengths(samples))

    return TokenClock.measure(tokens_of, sample_rate, round(max_seconds * sample_rate))


def fitted_topics(spec: TopicSpec) -> tuple[Topics, Path]:
    """The HuBERTopic topics of a declaration: read beside the labels, or fitted and stored there."""
    labels: dict[str, torch.Tensor] = {}
    for label_dir in spec.label_dirs:
        labels.update(read_labels(label_dir)[0])
    return ensure_topics(spec.label_dirs[0], labels, spec.num_classes, spec.config)


def target_sources(
    objective: Objective, inputs: nn.Module, max_seconds: float, *, training: bool = True
) -> dict[str, TargetSource]:
    """The objective's declared targets as data-layer sources, for utterances up to ``max_seconds``.

    ``training=False`` (validation data): utterances missing from a table get -1 instead of an error.
    """
    specs = objective.target_specs()
    clock = None
    sources: dict[str, TargetSource] = {}
    for name, spec in specs.items():
        if isinstance(spec, FrameLabelSpec):
            clock = clock or token_clock(objective, inputs, max_seconds)
            sources[name] = FrameTargets(spec.label_dirs, spec.num_classes, clock, spec.tolerance)
        elif isinstance(spec, TopicSpec):
            topics, path = fitted_topics(spec)
            kind = spec.config.target
            table = {utt: topics.targets([utt], kind)[0] for utt in topics.distribution}
            sources[name] = UtteranceTargets(table, "topic (was it in the labels the topics were fitted on?)", path)
        elif isinstance(spec, TableRowSpec):
            sources[name] = table_rows(spec.path, spec.what, None if training else torch.tensor(-1))  # store-backed
        else:
            raise ConfigError(f"target {name!r}: unknown declaration {type(spec).__name__}")
    return sources


def _longest_seconds(data: Any) -> float:
    """Longest utterance (after cropping) of a train-data object, with a margin for durations read from headers."""
    longest = max((max(dataset.durations, default=0.0) for dataset in data.datasets), default=0.0)
    return 1.05 * longest + 1.0


def attach_targets(objective: Objective, inputs: nn.Module, data: Any, valid: Any | None = None) -> None:
    """Give every dataset of ``data`` (and ``valid``) the objective's targets (nothing when it declares none)."""
    if not objective.target_specs():
        return
    for part, training in ((data, True), (valid, False)):
        if part is None:
            continue
        sources = target_sources(objective, inputs, _longest_seconds(part), training=training)
        for dataset in part.datasets:
            dataset.set_targets(sources)


def init_objective(objective: Objective, path: str | Path, *, sample_rate: int | None = None) -> Path:
    """``run.init_from``: an audiossl checkpoint or run dir, or a published checkpoint (converted on load).

    audiossl checkpoint (or a run dir's newest): its weights, except the objective's
    :attr:`~audiossl.objectives.Objective.target_heads`, which keep their fresh initialisation
    (their shape or meaning changes between iterations); any other weight that does not fit is a
    :class:`ConfigError`.

    Published wav2vec 2.0 / HuBERT / WavLM checkpoint (Hugging Face directory, torchaudio or fairseq2
    checkpoint, fairseq1 ``.pt``; :mod:`audiossl.interop.convert`): converted into the ``wav2vec2``
    encoder family and loaded into the objective's encoder, which must have the same architecture
    (the error gives the encoder section that fits) and ``sample_rate``; the objective's heads stay
    fresh. Returns the path read.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("run.init_from: no such file or directory", path)
    if not is_audiossl_checkpoint(path) and not _is_empty_run_dir(path):
        from audiossl.interop import detect_format
        from audiossl.interop.init import init_from_published

        try:
            detect_format(path)
        except DataError as error:
            raise DataError(
                "run.init_from is neither an audiossl checkpoint or run dir (ckpt-*.pt) nor a published checkpoint "
                f"audiossl converts: {error.message}",
                path,
            ) from None
        init_from_published(objective, path, sample_rate=sample_rate)
        return path
    source = init_from_checkpoint(objective, path, exclude=objective.target_heads)
    logger.info("initialised the weights from %s (kept fresh: %s)", source, ", ".join(objective.target_heads) or "none")
    return source


def _is_empty_run_dir(path: Path) -> bool:
    """A run dir (config.yaml) without checkpoints: the audiossl error ("no checkpoint") is the helpful one."""
    return path.is_dir() and (path / "config.yaml").is_file()


def init_path(run_init: str | None, objective_settings: Any) -> str | None:
    """``run.init_from``, or the deprecated ``objective.config.cluster.init`` of DINO configs."""
    cluster = getattr(objective_settings, "cluster", None)
    legacy = getattr(cluster, "init", None) if cluster is not None else None
    return run_init or legacy


__all__ = [
    "attach_targets",
    "fitted_topics",
    "init_objective",
    "init_path",
    "target_sources",
    "token_clock",
]
