"""fairseq2 wav2vec2 checkpoints, and fairseq1 wav2vec2 checkpoints through fairseq2's converter.

Two inputs, one model (fairseq2's ``Wav2Vec2Model``, wrapped: its front-end and encoder run as
fairseq2 wrote them, the quantizer and heads are dropped):

- a fairseq2 checkpoint directory: ``model.yaml`` (``model_family: wav2vec2`` and the full
  ``model_config``, as fairseq2's trainer writes it) and ``step_<N>/model/pp_00/tp_00/sdp_00.pt``
  (the newest step is taken; a step directory itself works too);
- a fairseq1 wav2vec2 checkpoint (``.pt`` with ``model`` and ``cfg`` or ``args``), pretrained
  or fine-tuned with CTC (its encoder is kept): the fairseq2 config is derived from fairseq1's
  config and the keys are renamed by fairseq2's converters
  (``convert_wav2vec2_state_dict``, ``convert_wav2vec2_asr_state_dict``). fairseq2 0.8.1's
  pretraining converter recognises fairseq1 files by a ``mask_emb.weight`` key and has no rule
  for the single positional convolution (``encoder.pos_conv.0.*``), while fairseq1 writes
  ``mask_emb`` and uses that convolution; :func:`fairseq1_to_fairseq2` fills both gaps before
  calling it (the ASR converter has neither gap).
"""

from __future__ import annotations

import argparse
import ast
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
#: The CTC projection that marks a fine-tuned fairseq1 wav2vec2 checkpoint.
FINE_TUNED_KEY = "w2v_encoder.proj.weight"


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
        converted = fairseq1_to_fairseq2(weights, config)
    else:
        converted = convert_wav2vec2_state_dict(dict(state), config)
    return build_encoder(config, converted, weights_file)


# --- fairseq1 checkpoints --------------------------------------------------------------------


def parse_conv_layers(text: str) -> list[tuple[int, int, int]]:
    """fairseq1's ``conv_feature_layers`` (e.g. ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``) without eval.

    Only list/tuple literals of integers joined by ``+`` and ``*`` are accepted: the string
    comes from the checkpoint, so it is parsed, never executed.
    """

    def value(node: ast.AST) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Tuple | ast.List):
            items = [value(item) for item in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"unsupported expression {ast.dump(node)}")

    try:
        layers = value(ast.parse(text, mode="eval").body)
        return [(int(a), int(b), int(c)) for a, b, c in layers]
    except (SyntaxError, ValueError, TypeError) as error:
        raise DataError(f"cannot parse conv_feature_layers {text!r}: {error}") from None


def _fairseq1_settings(state: Mapping[str, object], path: Path) -> tuple[dict, dict]:
    """(model settings, task settings) from ``cfg`` (fairseq >= 0.10) or ``args`` (older)."""
    if isinstance(state.get("cfg"), Mapping):
        cfg = state["cfg"]
        return dict(cfg.get("model") or {}), dict(cfg.get("task") or {})
    if state.get("args") is not None:
        args = vars(state["args"])
        return dict(args), dict(args)
    raise DataError("fairseq1 checkpoint without 'cfg' or 'args': its architecture is unknown", path)


def fairseq1_config(model: Mapping[str, object], path: Path) -> object:
    """The fairseq2 Wav2Vec2Config equal to a fairseq1 wav2vec2 model config."""
    from fairseq2.models.transformer import TransformerNormOrder
    from fairseq2.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2EncoderConfig

    name = model.get("_name") or model.get("arch")
    if name is not None and not str(name).startswith("wav2vec2"):
        raise DataError(f"only fairseq1 wav2vec2 pretraining checkpoints are supported, this model is {name!r}", path)
    if model.get("layer_type", "transformer") != "transformer":
        raise DataError(f"fairseq1 layer_type {model['layer_type']!r} is not supported (only 'transformer')", path)
    default = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
    layers = parse_conv_layers(str(model.get("conv_feature_layers", default)))
    pre_norm = bool(model.get("layer_norm_first", False))
    final_dim = int(model.get("final_dim", 0)) or int(model.get("encoder_embed_dim", 768))
    encoder = Wav2Vec2EncoderConfig(
        model_dim=int(model.get("encoder_embed_dim", 768)),
        feature_dim=layers[-1][0],
        feature_extractor_layer_descs=layers,
        feature_extractor_bias=bool(model.get("conv_bias", False)),
        feature_extractor_layer_norm_convs=model.get("extractor_mode", "default") == "layer_norm",
        layer_norm_features=not pre_norm,
        pos_encoder_depth=int(model.get("pos_conv_depth", 1)),
        pos_conv_kernel_size=int(model.get("conv_pos", 128)),
        num_pos_conv_groups=int(model.get("conv_pos_groups", 16)),
        num_encoder_layers=int(model.get("encoder_layers", 12)),
        num_encoder_attn_heads=int(model.get("encoder_attention_heads", 12)),
        ffn_inner_dim=int(model.get("encoder_ffn_embed_dim", 3072)),
        norm_order=TransformerNormOrder.PRE if pre_norm else TransformerNormOrder.POST,
        dropout_p=0.0,
        attn_dropout_p=0.0,
        layer_drop_p=0.0,
    )
    return Wav2Vec2Config(
        encoder_config=encoder,
        final_dim=final_dim,
        quantized_dim=int(model.get("latent_dim", 0)) or final_dim,
        num_codebooks=int(model.get("latent_groups", 2)),
        num_codebook_entries=int(model.get("latent_vars", 320)),
    )


def fairseq1_to_fairseq2(weights: Mapping[str, object], config: object) -> dict[str, object]:
    """fairseq1 wav2vec2 weights renamed to fairseq2's by fairseq2's converter (gaps of 0.8.1 filled)."""
    from fairseq2.models.wav2vec2 import convert_wav2vec2_state_dict

    weights = dict(weights)
    single_pos_conv = re.compile(r"^encoder\.pos_conv\.0\.(weight_g|weight_v|weight|bias)$")
    for key in [k for k in weights if single_pos_conv.match(k)]:
        weights[single_pos_conv.sub(r"encoder_frontend.pos_encoder.conv.\1", key)] = weights.pop(key)
    marker = "mask_emb.weight"  # what fairseq2 0.8.1 looks for to apply its fairseq1 rules
    weights.setdefault(marker, weights.get("mask_emb", torch.zeros(())))
    converted = convert_wav2vec2_state_dict(weights, config)
    converted.pop("masker.temporal_mask_embed.weight", None)
    return converted


def _fine_tuned_settings(state: Mapping[str, object], path: Path) -> tuple[dict, dict, dict]:
    """(pretraining model settings, pretraining task settings, fine-tuning task settings) of a CTC checkpoint.

    fairseq1 keeps the pretrained model's config inside the fine-tuning one (``w2v_args``).
    """
    model_settings, task_settings = _fairseq1_settings(state, path)
    nested = model_settings.get("w2v_args")
    if isinstance(nested, argparse.Namespace):
        nested = {"args": nested}
    elif isinstance(nested, Mapping):
        nested = {"cfg": nested}
    else:
        raise DataError("fine-tuned fairseq1 checkpoint without w2v_args: the encoder's architecture is unknown", path)
    pretrained_model, pretrained_task = _fairseq1_settings(nested, path)
    return pretrained_model, pretrained_task, task_settings


def load_fairseq1(path: Path) -> Fairseq2Wav2Vec2Encoder:
    """A fairseq1 wav2vec2 checkpoint (pretrained, or fine-tuned with CTC: its encoder), through fairseq2.

    Pretraining checkpoints go through :func:`fairseq1_to_fairseq2`; fine-tuned ones through
    fairseq2's ASR converter (``convert_wav2vec2_asr_state_dict``), whose rules cover them.
    """
    state = read_torch_file(path)
    if not isinstance(state, Mapping) or not isinstance(state.get("model"), Mapping):
        found = sorted(map(str, state)) if isinstance(state, Mapping) else type(state).__name__
        raise DataError(f"a fairseq1 checkpoint has a 'model' state dict; found {found}", path)
    if FINE_TUNED_KEY in state["model"]:
        from fairseq2.models.wav2vec2.asr import Wav2Vec2AsrConfig, convert_wav2vec2_asr_state_dict

        model_settings, pretrained_task, task_settings = _fine_tuned_settings(state, path)
        config = fairseq1_config(model_settings, path)
        asr_config = Wav2Vec2AsrConfig(encoder_config=config.encoder_config)
        weights = convert_wav2vec2_asr_state_dict(dict(state["model"]), asr_config)
        task_settings = {**pretrained_task, **task_settings}
    else:
        model_settings, task_settings = _fairseq1_settings(state, path)
        config = fairseq1_config(model_settings, path)
        weights = fairseq1_to_fairseq2(state["model"], config)
    return build_encoder(
        config,
        weights,
        path,
        sample_rate=int(task_settings.get("sample_rate", 16000)),
        normalize_waveform=bool(task_settings.get("normalize", False)),
    )


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
        and ("mask_emb" in state["model"] or FINE_TUNED_KEY in state["model"])
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
