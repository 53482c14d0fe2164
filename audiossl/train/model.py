"""Build what a run trains from its config: data, input pipeline, encoder and objective, checked together.

Mismatches between the parts are found here, before the first step, with a message that says
which setting to change: a front-end whose channel count differs from the encoder's
``input.num_bins``, a waveform encoder fed spectrograms, a mask that needs more tokens than
the shortest utterance has.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audiossl.audio.normalize import GlobalStats
from audiossl.data.backends import TrainData, create_train_data
from audiossl.data.features import compute_global_stats
from audiossl.encoders import Encoder, create_encoder
from audiossl.engine import distributed
from audiossl.engine.checkpoint import link_best  # noqa: F401  (moved to the engine; old import path kept)
from audiossl.errors import ConfigError
from audiossl.models import InputPipeline
from audiossl.objectives import Objective, create_objective
from audiossl.train.config import PretrainConfig, encoder_config, frontend_settings, objective_config
from audiossl.train.targets import attach_targets, init_objective, init_path

logger = logging.getLogger(__name__)

#: Where a run keeps the global statistics it computed.
STATS_NAME = "global_stats.npz"


@dataclass
class BuiltRun:
    """The parts of a run: training (and validation) data, input pipeline, objective with its encoder."""

    data: TrainData
    valid: TrainData | None
    inputs: InputPipeline
    objective: Objective
    encoder_config: Any


def build_model(
    config: PretrainConfig,
    data_dirs: Sequence[str | Path],
    run_dir: str | Path,
    dist: distributed.DistInfo,
    *,
    restoring: bool = False,
) -> BuiltRun:
    """Data, inputs and objective of ``config``; weights are initialised from ``run.seed``.

    Global statistics are computed (by the main process, into ``RUN_DIR/global_stats.npz``)
    unless a file is given or a checkpoint is being restored (it carries them).
    """
    run = config.run
    pin = dist.device.type == "cuda"
    data = create_train_data(
        data_dirs, config.data, seed=run.seed, rank=dist.rank, world_size=dist.world_size, pin_memory=pin
    )
    valid = None
    if run.valid_data:
        valid = create_train_data(
            run.valid_data, config.data, seed=run.seed, rank=dist.rank, world_size=dist.world_size, shuffle=False
        )
    frontend = frontend_settings(config)
    stats = None
    if config.data.normalize == "global" and frontend is not None and not restoring:
        stats = global_stats(config, data_dirs, frontend, Path(run_dir), dist)
    inputs = InputPipeline(config.data, frontend, stats)
    torch.manual_seed(run.seed)  # the same initial weights whatever was drawn before
    settings = encoder_config(config)
    encoder = create_encoder(config.encoder.family, config=settings)
    check_inputs(config, encoder, inputs)
    objective = create_objective(config.objective.name, encoder, objective_config(config))
    init = init_path(run.init_from, objective_config(config))
    if init is not None and not restoring:
        init_objective(objective, init, sample_rate=config.data.sample_rate)
    attach_targets(objective, inputs, data, valid)
    preflight_masks(objective, inputs, data)
    return BuiltRun(data, valid, inputs, objective, settings)


def global_stats(
    config: PretrainConfig, data_dirs: Sequence[str | Path], frontend: Any, run_dir: Path, dist: distributed.DistInfo
) -> GlobalStats:
    """The statistics file of ``data.global_stats``, or statistics of the training data (computed once)."""
    if config.data.global_stats is not None:
        return GlobalStats.load(config.data.global_stats)
    path = run_dir / STATS_NAME
    if dist.is_main and not path.is_file():
        logger.info("computing global feature statistics over %s", ", ".join(str(d) for d in data_dirs))
        stats = GlobalStats(frontend=config.data.frontend)
        for data_dir in data_dirs:
            stats = stats.merge(
                compute_global_stats(
                    data_dir,
                    config.data.frontend,
                    frontend,
                    sample_rate=config.data.sample_rate,
                    progress=True,
                    channel=config.data.channel,
                )
            )
        stats.save(path)
    distributed.barrier(dist)
    return GlobalStats.load(path)


def encoder_input_kind(encoder: Encoder) -> tuple[str | None, int | None]:
    """(input kind, spectrogram bins) an encoder reads, from its ``config.input`` when it has one."""
    settings = getattr(getattr(encoder, "config", None), "input", None)
    return getattr(settings, "kind", None), getattr(settings, "num_bins", None)


def check_inputs(config: PretrainConfig, encoder: Encoder, inputs: InputPipeline) -> None:
    """The input pipeline gives what the encoder reads (waveforms, or features of its bin count)."""
    kind, bins = encoder_input_kind(encoder)
    if kind is None:
        return
    if kind == "waveform" and inputs.frontend is not None:
        raise ConfigError(
            f"encoder {config.encoder.family!r} reads waveforms (input kind 'waveform'): set data.frontend: none"
        )
    if kind != "waveform" and inputs.frontend is None:
        raise ConfigError(
            f"encoder {config.encoder.family!r} reads spectrogram {kind}s: set data.frontend (e.g. fbank)"
        )
    if kind != "waveform" and bins != inputs.num_channels:
        raise ConfigError(
            f"the encoder reads {bins} bins (encoder.overrides.input.num_bins) but front-end "
            f"{config.data.frontend!r} gives {inputs.num_channels} channels; make them equal"
        )


def preflight_masks(objective: Objective, inputs: InputPipeline, data: TrainData) -> None:
    """Draw the objective's mask for the shortest utterance, so an impossible mask fails now, clearly."""
    utt, seconds = data.shortest()
    samples = torch.tensor([max(int(round(seconds * data.datasets[0].sample_rate)), 1)])
    tokens = objective.encoder.token_lengths(inputs.output_lengths(samples))
    if int(tokens[0]) < 1:
        raise ConfigError(
            f"the shortest utterance {utt!r} ({seconds:.3f} s) gives no encoder token; raise data.min_utt_seconds"
        )
    try:
        objective.sample_mask(tokens, int(tokens.max()), torch.Generator().manual_seed(0))
    except ConfigError as error:
        # The mask sampler names keys of its own section (mask.count): name them as this config does.
        message = re.sub(r"(?<![\w.])mask\.", "objective.config.mask.", error.message)
        raise ConfigError(
            f"{message}. The shortest training utterance {utt!r} ({seconds:.3f} s) gives {int(tokens[0])} "
            "encoder tokens: change objective.config.mask, or skip short utterances with data.min_utt_seconds"
        ) from None
