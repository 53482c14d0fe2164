"""``run.init_from`` with a published checkpoint: convert it, check it fits the run's encoder, load it.

The run's config keeps describing the encoder (so ``config.yaml`` and every checkpoint of the run
rebuild it without the published file); the published weights must fit that description. When
they do not, the error gives the ``encoder:`` section that does, in YAML, ready to paste.
Dropout settings are the run's own choice and are not compared.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from torch import nn

from audiossl.config import to_dict
from audiossl.errors import ConfigError
from audiossl.interop.convert import ConvertedEncoder, convert_checkpoint

logger = logging.getLogger(__name__)

#: Config fields that are training choices, not architecture: they may differ from the checkpoint's.
TRAINING_FIELDS = ("dropout", "attention_dropout", "activation_dropout")


def _section_yaml(converted: ConvertedEncoder) -> str:
    text = yaml.safe_dump({"encoder": converted.encoder_section()}, sort_keys=False, default_flow_style=None)
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def _differences(ours: dict, theirs: dict, prefix: str = "") -> list[str]:
    rows = []
    for key in sorted(set(ours) | set(theirs)):
        if not prefix and key in TRAINING_FIELDS:
            continue
        a, b = ours.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "frontend_options":
            rows += _differences(a, b, f"{prefix}{key}.")
        elif _plain(a) != _plain(b):
            rows.append(
                f"encoder.overrides.{prefix}{key}: this run has {_plain(a)!r}, the checkpoint has {_plain(b)!r}"
            )
    return rows


def _plain(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    return value


def check_fits(objective: nn.Module, converted: ConvertedEncoder, path: Path, sample_rate: int | None) -> None:
    """A :class:`ConfigError` unless the run's encoder (family, architecture, input) and sample rate fit."""
    from audiossl.encoders.wav2vec2 import Wav2Vec2Encoder

    encoder = objective.encoder
    what = f"run.init_from={path} is a {converted.source} model that converts into the 'wav2vec2' encoder family"
    if not isinstance(encoder, Wav2Vec2Encoder):
        family = type(encoder).__name__
        raise ConfigError(
            f"{what}, but this run's encoder is a {family} (objective {type(objective).__name__}). "
            f"Use this encoder section:\n{_section_yaml(converted)}"
        )
    differences = _differences(to_dict(encoder.config), to_dict(converted.config))
    if differences:
        raise ConfigError(
            f"{what}, with another architecture than this run's encoder:\n  "
            + "\n  ".join(differences)
            + f"\nUse this encoder section:\n{_section_yaml(converted)}"
        )
    if sample_rate is not None and int(sample_rate) != converted.sample_rate:
        raise ConfigError(
            f"{what}, trained on {converted.sample_rate} Hz audio; this run reads {sample_rate} Hz: "
            f"set data.sample_rate: {converted.sample_rate}"
        )


def init_from_published(objective: nn.Module, path: str | Path, *, sample_rate: int | None = None) -> ConvertedEncoder:
    """Load a published checkpoint's converted weights into ``objective.encoder`` (and its copies).

    Copies: other sub-modules of the objective of the same encoder class and config (an EMA teacher
    made by ``copy.deepcopy``) get the same weights, so a teacher starts from the published model
    too. The objective's own heads keep their initialisation. A mask embedding the checkpoint lacks
    keeps the run's initialisation.
    """
    path = Path(path)
    converted = convert_checkpoint(path)
    check_fits(objective, converted, path, sample_rate)
    weights = {k: v for k, v in converted.encoder.state_dict().items() if k not in converted.fresh}
    encoder = objective.encoder
    targets = [encoder] + [
        module
        for module in objective.modules()
        if module is not encoder and type(module) is type(encoder) and module.config == encoder.config
    ]
    for module in targets:
        missing, unexpected = module.load_state_dict(weights, strict=False)
        if unexpected or set(missing) - set(converted.fresh):
            raise ConfigError(f"the converted weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    logger.info(
        "initialised the encoder%s from %s (%s, converted); objective heads%s keep their initialisation",
        f" and {len(targets) - 1} copy(ies)" if len(targets) > 1 else "",
        path,
        converted.source,
        " and " + ", ".join(converted.fresh) if converted.fresh else "",
    )
    return converted
