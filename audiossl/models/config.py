"""What rebuilding a trained encoder needs: the data (front-end) section and the encoder section.

:class:`ModelConfig` is the part of a pretraining config that a checkpoint's encoder bundle is
rebuilt from; ``PretrainConfig`` is composed from the same sections (plus objective, optim and
run), so the YAML schema and the checkpoint's ``config`` entry are unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from audiossl.audio.frontends import FRONTENDS, frontend_config
from audiossl.config import from_dict, to_dict
from audiossl.data.config import DataConfig
from audiossl.encoders import ENCODERS
from audiossl.errors import ConfigError


@dataclass(kw_only=True)
class EncoderSection:
    """Which encoder to pretrain."""

    family: str = "ast"
    """Registered encoder family (``audiossl encoders list``): ast, mamba, conformer."""

    preset: str = "tiny"
    """The family's preset the config starts from (tiny, small, base)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    """Fields of the preset's config to change, nested as in the config (``input: {num_bins: 80}``)."""


@dataclass(kw_only=True)
class ModelConfig:
    """The sections a trained encoder bundle is rebuilt from (a subset of a pretraining config)."""

    data: DataConfig = field(default_factory=DataConfig)
    """Sample rate, front-end and normalisation of the inputs."""

    encoder: EncoderSection = field(default_factory=EncoderSection)
    """The encoder family, preset and overrides."""


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` of a full config mapping (other sections, e.g. objective, are ignored)."""
    return from_dict(ModelConfig, {key: data[key] for key in ("data", "encoder") if key in data})


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in recursively (mappings merge, anything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def encoder_config(config: Any) -> Any:
    """The encoder's config: the family's preset with ``encoder.overrides`` merged in.

    ``config``: anything with an ``encoder`` section (a ``PretrainConfig``, a :class:`ModelConfig`),
    or an :class:`EncoderSection`.
    """
    section = config if isinstance(config, EncoderSection) else config.encoder
    spec = ENCODERS.get(section.family)
    if section.preset not in spec.presets:
        raise ConfigError(
            f"unknown preset {section.preset!r} for encoder {section.family!r}; known: {', '.join(spec.presets)}"
        )
    preset = to_dict(spec.presets[section.preset]())
    return from_dict(spec.config_class, deep_merge(preset, section.overrides), prefix="encoder.overrides.")


def frontend_settings(config: Any) -> Any | None:
    """The front-end's config (None for ``frontend: none``); its sample rate is ``data.sample_rate``.

    ``config``: anything with a ``data`` section, or a :class:`~audiossl.data.config.DataConfig`.
    """
    data = config if isinstance(config, DataConfig) else config.data
    if data.frontend == "none":
        return None
    spec = FRONTENDS.get(data.frontend)
    if spec.learnable:
        raise ConfigError(
            f"data.frontend {data.frontend!r} is learnable: use an encoder with input kind 'waveform' "
            "(its CNN is trained with it) and data.frontend: none"
        )
    options = dict(data.frontend_config)
    field_names = {f.name for f in dataclasses.fields(spec.config_class)}
    if "sample_rate" in field_names:
        given = options.setdefault("sample_rate", data.sample_rate)
        if given != data.sample_rate:
            raise ConfigError(
                f"data.frontend_config.sample_rate={given} differs from data.sample_rate={data.sample_rate}"
            )
    return frontend_config(data.frontend, options)
