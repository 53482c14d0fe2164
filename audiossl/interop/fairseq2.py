"""fairseq2 wav2vec2 checkpoints, and fairseq1 wav2vec2 checkpoints through fairseq2's converters.

Every input ends in one model, fairseq2's ``Wav2Vec2Model``, wrapped: its front-end and encoder
run as fairseq2 wrote them, the quantizer and heads are dropped. Inputs:

- a fairseq2 checkpoint directory: ``model.yaml`` (``model_family: wav2vec2`` and the full
  ``model_config``, as fairseq2's trainer writes it) and ``step_<N>/model/pp_00/tp_00/sdp_00.pt``
  (the newest step is taken; a step directory itself works too);
- a fairseq2 model card (``.yaml``): ``model_arch`` and/or ``model_config``, and a local
  ``checkpoint``;
- a fairseq1 wav2vec2 checkpoint, pretrained or CTC fine-tuned (:mod:`audiossl.interop.fairseq1`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from audiossl.config import parse_yaml
from audiossl.errors import DataError
from audiossl.interop.base import Importer, peek_torch_file, read_torch_file, register_importer
from audiossl.interop.fairseq1 import fairseq1_to_fairseq2, load_fairseq1
from audiossl.interop.fairseq2_encoder import (  # noqa: F401  (ENCODER_PREFIXES: its old import path)
    ENCODER_PREFIXES,
    Fairseq2Wav2Vec2Encoder,
    build_encoder,
)

MODEL_FILE = Path("model") / "pp_00" / "tp_00" / "sdp_00.pt"
# --- fairseq2 checkpoint directories ---------------------------------------------------------


def _checkpoint_dir(path: Path) -> Path | None:
    """The directory holding model.yaml: ``path`` itself or, for a step directory, its parent."""
    for candidate in (path, path.parent):
        if (candidate / "model.yaml").is_file():
            return candidate
    return None


def _model_file(path: Path, root: Path) -> Path:
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    steps = sorted((int(m.group(1)), d) for d in root.glob("step_*") if (m := re.fullmatch(r"step_(\d+)", d.name)))
    steps = [(n, d) for n, d in steps if (d / MODEL_FILE).is_file()]
    if not steps:
        shards = sorted(str(p.relative_to(root)) for p in root.glob("step_*/model/**/*.pt"))
        detail = f"; found only {', '.join(shards[:6])} (sharded checkpoints are not supported)" if shards else ""
        raise DataError(f"no step_<N>/{MODEL_FILE.as_posix()} in this fairseq2 checkpoint{detail}", root)
    return steps[-1][1] / MODEL_FILE


def _merge(base: dict, overrides: Mapping) -> dict:
    """``base`` with ``overrides`` applied key by key, nested dicts merged (an asset card's model_config)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def card_config(card: Mapping[str, object], card_file: Path) -> object:
    """The Wav2Vec2Config of a model card: ``model_arch`` (a fairseq2 preset, default ``base``'s
    defaults) with ``model_config`` applied over it (fairseq2's trainer writes the full config)."""
    from fairseq2.models.wav2vec2 import Wav2Vec2Config, register_wav2vec2_configs
    from fairseq2.runtime.config_registry import ConfigNotFoundError, get_config
    from fairseq2.runtime.dependency import DependencyContainer
    from fairseq2.utils.structured import StandardValueConverter, StructureError

    family = card.get("model_family")
    if family != "wav2vec2":
        raise DataError(f"only the fairseq2 model family 'wav2vec2' is supported, this is {family!r}", card_file)
    arch, overrides = card.get("model_arch"), card.get("model_config") or {}
    if arch is None and not overrides:
        raise DataError("the card has neither model_arch nor model_config: the architecture is unknown", card_file)
    if not isinstance(overrides, Mapping):
        raise DataError("model_config must be a mapping", card_file)
    base = Wav2Vec2Config()
    if arch is not None:
        presets = DependencyContainer()
        register_wav2vec2_configs(presets)
        try:
            base = get_config(presets, Wav2Vec2Config, str(arch))
        except ConfigNotFoundError:
            raise DataError(f"unknown fairseq2 wav2vec2 model_arch {arch!r}", card_file) from None
    converter = StandardValueConverter()
    try:
        return converter.structure(_merge(converter.unstructure(base), overrides), Wav2Vec2Config)
    except StructureError as error:
        raise DataError(f"model_config is not a fairseq2 Wav2Vec2Config: {error}", card_file) from None


def _card_checkpoint(card: Mapping[str, object], card_file: Path) -> Path | None:
    """The local file a card's ``checkpoint`` field names (a path or file:// URI; nothing is downloaded)."""
    location = card.get("checkpoint")
    if location is None:
        return None
    location = str(location)
    if location.startswith("file://"):
        location = location[len("file://") :]
    elif "://" in location:
        raise DataError(f"checkpoint {location} is not a local file (nothing is downloaded)", card_file)
    file = Path(location).expanduser()
    file = file if file.is_absolute() else card_file.parent / file
    if not file.is_file():
        raise DataError(f"the card's checkpoint {file} does not exist", card_file)
    return file


def load_fairseq2_dir(path: Path) -> Fairseq2Wav2Vec2Encoder:
    """A fairseq2 wav2vec2 checkpoint: a trainer directory (model.yaml + step_<N>/model/...), a step
    directory, or a model card (``.yaml``: model_family, model_arch and/or model_config, checkpoint).

    A card's checkpoint may be a fairseq2 state dict or a fairseq1 file (renamed as in
    :func:`fairseq1_to_fairseq2`); the architecture always comes from the card.
    """
    import yaml
    from fairseq2.models.wav2vec2 import convert_wav2vec2_state_dict

    if path.is_file():
        root, card_file = path.parent, path
    else:
        root = _checkpoint_dir(path)
        if root is None:
            raise DataError("not a fairseq2 checkpoint: no model.yaml here or in the parent directory", path)
        card_file = root / "model.yaml"
    try:
        card = parse_yaml(card_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the fairseq2 model card: {error}", card_file) from None
    if not isinstance(card, Mapping):
        raise DataError("a fairseq2 model card is a YAML mapping", card_file)
    config = card_config(card, card_file)
    weights_file = _card_checkpoint(card, card_file) or _model_file(path if path.is_dir() else root, root)
    state = read_torch_file(weights_file)
    if not isinstance(state, Mapping):
        raise DataError(f"expected a state dict, found {type(state).__name__}", weights_file)
    weights = state.get("model", state)
    if isinstance(weights, Mapping) and "mask_emb" in weights:  # a fairseq1 file named by a card
        converted = fairseq1_to_fairseq2(weights, config)
    else:
        converted = convert_wav2vec2_state_dict(dict(state), config)
    return build_encoder(config, converted, weights_file)


def load(path: Path) -> Fairseq2Wav2Vec2Encoder:
    """A fairseq2 checkpoint directory or model card, or a fairseq1 wav2vec2 ``.pt``."""
    if path.is_dir() or path.suffix in (".yaml", ".yml"):
        return load_fairseq2_dir(path)
    return load_fairseq1(path)


def _detect(path: Path) -> bool:
    if path.is_dir():
        return _checkpoint_dir(path) is not None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            card = parse_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            return False
        return isinstance(card, Mapping) and card.get("model_family") == "wav2vec2"
    state = peek_torch_file(path)
    return (
        isinstance(state, Mapping)
        and isinstance(state.get("model"), Mapping)
        and ("mask_emb" in state["model"] or "w2v_encoder.proj.weight" in state["model"])  # pretrained / CTC
        and ("cfg" in state or "args" in state)
    )


register_importer(
    Importer(
        name="fairseq2",
        description="fairseq2 wav2vec2 checkpoint dir or model card (.yaml); fairseq1 wav2vec2 .pt (pretrained or CTC)",
        detect=_detect,
        load=load,
    )
)
