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

import torch
from torch import nn

from audiossl.encoders import EncoderOutput
from audiossl.errors import DataError
from audiossl.interop.base import (
    ImportedEncoder,
    Importer,
    load_weights,
    make_output,
    normalize_waveforms,
    read_torch_file,
    register_importer,
    run_items_alone,
)

MODEL_FILE = Path("model") / "pp_00" / "tp_00" / "sdp_00.pt"
#: Parts of fairseq2's Wav2Vec2Model an encoder needs (the quantizer and projections are for pretraining).
ENCODER_PREFIXES = ("encoder_frontend.", "encoder.")


class Fairseq2Wav2Vec2Encoder(ImportedEncoder):
    """fairseq2's wav2vec2 front-end + Transformer encoder as an audiossl encoder (wrapped).

    ``exact_padding`` as in :class:`~audiossl.interop.torchaudio.TorchaudioEncoder`.
    """

    def __init__(self, model: nn.Module, config: object, *, sample_rate: int = 16000, normalize_waveform: bool = False):
        super().__init__()
        self.encoder_frontend = model.encoder_frontend.eval()
        self.encoder = model.encoder.eval()
        encoder_config = config.encoder_config
        self.sample_rate = sample_rate
        self.normalize_waveform = normalize_waveform
        self.dim = encoder_config.model_dim
        self.num_layers = encoder_config.num_encoder_layers
        strides = [stride for _, _, stride in encoder_config.feature_extractor_layer_descs]
        self.frame_rate = sample_rate / float(torch.tensor(strides).prod())
        # Padding reaches valid frames through a group norm over time in the first convolution, and
        # through stacked positional convolutions (fairseq2 zeroes padding only before the first).
        self.padding_leaks = (
            not encoder_config.feature_extractor_layer_norm_convs or encoder_config.pos_encoder_depth > 1
        )
        self.exact_padding = True
        self._layers: list[torch.Tensor] | None = None  # a list only while _run records
        self.encoder.register_layer_hook(self._record)

    def _record(self, layer_idx: int, layer_output: torch.Tensor, layout: object, num_layers: int) -> bool:
        if self._layers is not None:
            self._layers.append(layer_output)
        return True  # run every layer

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        from fairseq2.nn import BatchLayout

        layout = BatchLayout(tuple(waveforms.shape), lengths.tolist(), device=waveforms.device)
        seqs, layout, _ = self.encoder_frontend.extract_features(waveforms, layout)  # (B, S, C)
        seqs, _ = self.encoder_frontend.process_features(seqs, layout)  # (B, S, D)
        self._layers = layers = []  # L x (B, S, D)
        try:
            last = self.encoder(seqs, layout)
        finally:
            self._layers = None
        frame_lengths = torch.as_tensor(list(layout.seq_lens), dtype=torch.long, device=waveforms.device)
        return last, layers, frame_lengths

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        lengths = lengths.to(waveforms.device)
        if self.normalize_waveform:
            waveforms = normalize_waveforms(waveforms, lengths)
        if self.padding_leaks and self.exact_padding:
            last, layers, frame_lengths = run_items_alone(self._run, waveforms, lengths)
        else:
            last, layers, frame_lengths = self._run(waveforms, lengths)
        return make_output(last, layers, frame_lengths)


def build_encoder(
    config: object,
    state_dict: Mapping[str, object],
    path: Path,
    *,
    sample_rate: int = 16000,
    normalize_waveform: bool = False,
) -> Fairseq2Wav2Vec2Encoder:
    """fairseq2's Wav2Vec2Model from ``config``, with the front-end and encoder weights of ``state_dict``."""
    from fairseq2.models.wav2vec2 import create_wav2vec2_model

    if config.encoder_config.use_fbank:
        raise DataError("fbank-input wav2vec2 models (w2v-BERT style) are not supported; only waveform input", path)
    model = create_wav2vec2_model(config)
    parts = nn.ModuleDict({"encoder_frontend": model.encoder_frontend, "encoder": model.encoder})
    weights = {k: v for k, v in state_dict.items() if k.startswith(ENCODER_PREFIXES)}
    load_weights(parts, weights, path, "fairseq2 wav2vec2 encoder")
    return Fairseq2Wav2Vec2Encoder(model, config, sample_rate=sample_rate, normalize_waveform=normalize_waveform)


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
        card = yaml.safe_load(card_file.read_text())
    except yaml.YAMLError as error:
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
        from audiossl.interop.fairseq1 import fairseq1_to_fairseq2

        converted = fairseq1_to_fairseq2(weights, config)
    else:
        converted = convert_wav2vec2_state_dict(dict(state), config)
    return build_encoder(config, converted, weights_file)


def load(path: Path) -> Fairseq2Wav2Vec2Encoder:
    """A fairseq2 checkpoint directory or model card, or a fairseq1 wav2vec2 ``.pt``."""
    if path.is_dir() or path.suffix in (".yaml", ".yml"):
        return load_fairseq2_dir(path)
    from audiossl.interop.fairseq1 import load_fairseq1

    return load_fairseq1(path)


def _detect(path: Path) -> bool:
    if path.is_dir():
        return _checkpoint_dir(path) is not None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            card = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            return False
        return isinstance(card, Mapping) and card.get("model_family") == "wav2vec2"
    if not path.is_file() or path.suffix == ".safetensors":
        return False
    try:
        state = read_torch_file(path, mmap=True)
    except DataError:
        return False
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
