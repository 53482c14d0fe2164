"""Convert published wav2vec 2.0 / HuBERT / WavLM checkpoints into audiossl's own ``wav2vec2`` encoder.

Importing (:func:`audiossl.interop.import_model`) wraps the peer's module; converting builds a
:class:`~audiossl.encoders.wav2vec2.Wav2Vec2Encoder` with the peer's architecture and weights, so
any audiossl objective can train it further (``run.init_from``), with audiossl's masking,
activation checkpointing, FSDP and padding contract. Every block's output equals the peer's
(tests: <= 1e-4 on tiny random models saved in each peer's own format).

Sources: Hugging Face ``Wav2Vec2Model`` / ``HubertModel`` / ``WavLMModel`` directories,
torchaudio ``wav2vec2_model`` / ``hubert_*`` / ``wavlm_model`` checkpoints, fairseq2 wav2vec2
checkpoints and cards, and fairseq1 wav2vec2 checkpoints (through fairseq2's converter). The file
is read by the importer of its format (never running code from it), then renamed here, key by
key; a weight left over or missing is a :class:`~audiossl.errors.DataError` naming it.

What does not convert: pretraining heads (quantizers, HuBERT's label embeddings: an objective
brings its own), and parts the family has no equivalent for (Conformer blocks, stacked
positional convolutions, HuBERT's batch-norm positional variant) are refused by name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from audiossl.config import to_dict
from audiossl.encoders.embed import InputConfig
from audiossl.encoders.wav2vec2 import Wav2Vec2Encoder, Wav2Vec2EncoderConfig
from audiossl.errors import DataError
from audiossl.interop.base import ImportedEncoder, load_weights

logger = logging.getLogger(__name__)

#: Hugging Face ``model_type`` values that convert (their base-model classes share the layout).
HF_CONVERTIBLE = ("wav2vec2", "hubert", "wavlm")


@dataclass
class ConvertedEncoder:
    """A published checkpoint as an audiossl encoder: the module, its config and where it came from.

    ``fresh``: parameters of the encoder the checkpoint had no value for (kept at their
    initialisation; the mask embedding of models published without one).
    """

    encoder: Wav2Vec2Encoder
    config: Wav2Vec2EncoderConfig
    source: str
    sample_rate: int
    fresh: tuple[str, ...] = ()

    def encoder_section(self) -> dict:
        """The ``encoder:`` section of a pretraining config that builds this architecture (base preset + overrides)."""
        return {"family": "wav2vec2", "preset": "base", "overrides": architecture_overrides(self.config)}


def architecture_overrides(config: Wav2Vec2EncoderConfig, preset: Wav2Vec2EncoderConfig | None = None) -> dict:
    """The fields of ``config`` that differ from ``preset`` (the base preset by default), nested as in YAML."""
    base = to_dict(preset or Wav2Vec2EncoderConfig())
    ours = to_dict(config)

    def diff(a: dict, b: dict) -> dict:
        out = {}
        for key, value in b.items():
            if isinstance(value, dict) and isinstance(a.get(key), dict) and key != "frontend_options":
                inner = diff(a[key], value)
                if inner:
                    out[key] = inner
            elif a.get(key) != value:
                out[key] = _plain(value)
        return out

    return diff(base, ours)


def _plain(value: object) -> object:
    """Tuples -> lists, recursively (YAML- and comparison-friendly)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _input(
    conv_layers: list[tuple[int, int, int]],
    mode: str,
    conv_bias: bool,
    normalize: bool,
    pos_kernel: int,
    pos_groups: int,
) -> InputConfig:
    options = {
        "conv_layers": [[int(c), int(k), int(s)] for c, k, s in conv_layers],
        "mode": mode,
        "conv_bias": bool(conv_bias),
    }
    if normalize:
        options["normalize_waveform"] = True
    return InputConfig(
        kind="waveform",
        frontend="wav2vec2_cnn",
        frontend_options=options,
        conv_pos_kernel=int(pos_kernel),
        conv_pos_groups=int(pos_groups),
    )


def _rename(state: Mapping[str, torch.Tensor], rules: list[tuple[str, str]], path: Path, what: str) -> dict:
    """Every key through the first matching ``(regex, replacement)``; an unmatched key is a DataError."""
    renamed, unmatched = {}, []
    for key, value in state.items():
        for pattern, replacement in rules:
            new, count = re.subn(pattern, replacement, key)
            if count:
                if new:  # an empty replacement drops the key (buffers with no parameter meaning)
                    renamed[new] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        raise DataError(
            f"the {what} has weights the wav2vec2 family cannot hold ({len(unmatched)}): {', '.join(unmatched[:12])}",
            path,
        )
    return renamed


_WEIGHT_NORM = [
    (r"(\.conv)\.weight_g$", r"\1.parametrizations.weight.original0"),
    (r"(\.conv)\.weight_v$", r"\1.parametrizations.weight.original1"),
]


def _build(
    config: Wav2Vec2EncoderConfig, weights: dict[str, torch.Tensor], path: Path, what: str
) -> tuple[Wav2Vec2Encoder, tuple[str, ...]]:
    """The encoder of ``config`` with ``weights``; only the mask embedding may be absent (kept fresh)."""
    encoder = Wav2Vec2Encoder(config)
    fresh = tuple(k for k in ("embedding.mask_embedding",) if k not in weights)
    expected = encoder.state_dict()
    for key in fresh:
        weights[key] = expected[key]
    weights = {k: v.detach().clone().float() for k, v in weights.items()}
    load_weights(encoder, weights, path, f"wav2vec2 encoder converted from a {what}")
    return encoder.eval(), fresh


# --- Hugging Face ---------------------------------------------------------------------------


def convert_transformers(model: nn.Module, *, normalize_waveform: bool, path: Path = Path("<model>")) -> tuple:
    """A transformers ``Wav2Vec2Model`` / ``HubertModel`` / ``WavLMModel`` -> (config, weights) of the family."""
    hf = model.config
    model_type = hf.model_type
    if model_type not in HF_CONVERTIBLE:
        raise DataError(
            f"Hugging Face model_type {model_type!r} does not convert into the wav2vec2 family "
            f"(convertible: {', '.join(HF_CONVERTIBLE)}); import it as a wrapper instead (audiossl embed)",
            path,
        )
    if getattr(hf, "conv_pos_batch_norm", False):
        raise DataError("HuBERT's batch-norm positional convolution (conv_pos_batch_norm) is not supported", path)
    if hf.hidden_act not in ("gelu", "relu") or hf.feat_extract_activation != "gelu":
        raise DataError(
            f"activations hidden_act={hf.hidden_act!r}, feat_extract_activation={hf.feat_extract_activation!r} "
            "are not supported (gelu or relu in the Transformer, gelu in the CNN)",
            path,
        )
    layer_norm = hf.feat_extract_norm == "layer"
    config = Wav2Vec2EncoderConfig(
        input=_input(
            list(zip(hf.conv_dim, hf.conv_kernel, hf.conv_stride, strict=True)),
            "layer_norm" if layer_norm else "group_norm",
            hf.conv_bias,
            normalize_waveform,
            hf.num_conv_pos_embeddings,
            hf.num_conv_pos_embedding_groups,
        ),
        dim=hf.hidden_size,
        num_layers=hf.num_hidden_layers,
        num_heads=hf.num_attention_heads,
        ffn_dim=hf.intermediate_size,
        layer_norm_first=bool(hf.do_stable_layer_norm),
        feature_norm=bool(getattr(hf, "feat_proj_layer_norm", True)),
        relative_position_bias=model_type == "wavlm",
        num_buckets=int(getattr(hf, "num_buckets", 320)),
        max_distance=int(getattr(hf, "max_bucket_distance", 800)),
        activation=hf.hidden_act,
        layer_norm_eps=float(hf.layer_norm_eps),
        dropout=float(hf.hidden_dropout),
        attention_dropout=float(hf.attention_dropout),
        activation_dropout=float(hf.activation_dropout),
    )
    rules = [
        (r"^masked_spec_embed$", "embedding.mask_embedding"),
        (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"embedding.frontend.blocks.\1.conv."),
        (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"embedding.frontend.blocks.\1.norm."),
        (r"^feature_projection\.layer_norm\.", "embedding.frontend_norm."),
        (r"^feature_projection\.projection\.", "embedding.projection."),
        (r"^encoder\.pos_conv_embed\.conv\.", "embedding.conv_positions.conv."),
        (r"^encoder\.layer_norm\.", "norm."),
        (r"^encoder\.layers\.0\.attention\.rel_attn_embed\.", "relative_position.embedding."),
        (r"^encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const$", r"blocks.\1.attention.gate_const"),
        (r"^encoder\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.", r"blocks.\1.attention.gate_linear."),
        (r"^encoder\.layers\.(\d+)\.attention\.(q_proj|k_proj|v_proj|out_proj)\.", r"blocks.\1.attention.\2."),
        (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"blocks.\1.attention_norm."),
        (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"blocks.\1.ffn_norm."),
        (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"blocks.\1.ffn_in."),
        (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"blocks.\1.ffn_out."),
    ]
    weights = _rename(model.state_dict(), rules, path, f"Hugging Face {type(model).__name__}")
    weights = _rename(weights, [*_WEIGHT_NORM, (r"^", "")], path, "model")
    return config, weights


# --- torchaudio -----------------------------------------------------------------------------


def convert_torchaudio(model: nn.Module, *, normalize_waveform: bool, path: Path = Path("<model>")) -> tuple:
    """A ``torchaudio.models.Wav2Vec2Model`` (wav2vec2, HuBERT or WavLM) -> (config, weights) of the family."""
    blocks = model.feature_extractor.conv_layers
    convs = [block.conv for block in blocks]
    first_norm = blocks[0].layer_norm
    encoder = model.encoder
    transformer = encoder.transformer
    layers = transformer.layers
    attention = layers[0].attention
    wavlm = type(attention).__name__ == "WavLMSelfAttention"
    if wavlm and not attention.gru_rel_pos:
        raise DataError("WavLM attention without the gated relative position bias is not supported", path)
    pos_conv = transformer.pos_conv_embed.conv
    config = Wav2Vec2EncoderConfig(
        input=_input(
            [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs],
            "group_norm" if isinstance(first_norm, nn.GroupNorm) else "layer_norm",
            convs[0].bias is not None,
            normalize_waveform,
            pos_conv.kernel_size[0],
            pos_conv.groups,
        ),
        dim=encoder.feature_projection.projection.out_features,
        num_layers=len(layers),
        num_heads=attention.num_heads,
        ffn_dim=layers[0].feed_forward.intermediate_dense.out_features,
        layer_norm_first=bool(layers[0].layer_norm_first),
        relative_position_bias=wavlm,
        num_buckets=int(attention.num_buckets) if wavlm else 320,
        max_distance=int(attention.max_distance) if wavlm else 800,
        layer_norm_eps=float(transformer.layer_norm.eps),
        dropout=float(layers[0].dropout.p),
        attention_dropout=float(attention.dropout),  # a probability in both attention classes
        activation_dropout=float(layers[0].feed_forward.intermediate_dropout.p),
    )
    state = dict(model.state_dict())
    for key in [k for k in state if k.endswith(".attention.attention.in_proj_weight")]:  # WavLM: packed q, k, v
        prefix = key[: -len("attention.in_proj_weight")]
        for name, weight, bias in zip(
            ("q_proj", "k_proj", "v_proj"),
            state.pop(key).chunk(3),
            state.pop(prefix + "attention.in_proj_bias").chunk(3),
            strict=True,
        ):
            state[f"{prefix}{name}.weight"], state[f"{prefix}{name}.bias"] = weight, bias
        for part in ("weight", "bias"):
            state[f"{prefix}out_proj.{part}"] = state.pop(f"{prefix}attention.out_proj.{part}")
    layer = r"^encoder\.transformer\.layers\.(\d+)\."
    rules = [
        (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"embedding.frontend.blocks.\1.conv."),
        (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"embedding.frontend.blocks.\1.norm."),
        (r"^encoder\.feature_projection\.layer_norm\.", "embedding.frontend_norm."),
        (r"^encoder\.feature_projection\.projection\.", "embedding.projection."),
        (r"^encoder\.transformer\.pos_conv_embed\.conv\.", "embedding.conv_positions.conv."),
        (r"^encoder\.transformer\.layer_norm\.", "norm."),
        (r"^encoder\.transformer\.layers\.0\.attention\.rel_attn_embed\.", "relative_position.embedding."),
        (layer + r"attention\.gru_rel_pos_const$", r"blocks.\1.attention.gate_const"),
        (layer + r"attention\.gru_rel_pos_linear\.", r"blocks.\1.attention.gate_linear."),
        (layer + r"attention\.(q_proj|k_proj|v_proj|out_proj)\.", r"blocks.\1.attention.\2."),
        (layer + r"layer_norm\.", r"blocks.\1.attention_norm."),
        (layer + r"final_layer_norm\.", r"blocks.\1.ffn_norm."),
        (layer + r"feed_forward\.intermediate_dense\.", r"blocks.\1.ffn_in."),
        (layer + r"feed_forward\.output_dense\.", r"blocks.\1.ffn_out."),
    ]
    weights = _rename(state, rules, path, "torchaudio model")
    weights = _rename(weights, [*_WEIGHT_NORM, (r"^", "")], path, "model")
    return config, weights


# --- fairseq2 (and fairseq1 through it) -----------------------------------------------------


def convert_fairseq2(
    frontend: nn.Module, encoder: nn.Module, config: object, *, normalize_waveform: bool, path: Path = Path("<model>")
) -> tuple:
    """fairseq2's wav2vec2 ``encoder_frontend`` + ``encoder`` (and its ``Wav2Vec2Config``) -> (config, weights)."""
    from fairseq2.models.transformer import TransformerNormOrder

    ec = config.encoder_config
    if ec.use_conformer:
        raise DataError("fairseq2 Conformer encoders (use_conformer) do not convert into the wav2vec2 family", path)
    if ec.pos_encoder_type != "conv" or ec.pos_encoder_depth != 1:
        raise DataError(
            f"positional encoder {ec.pos_encoder_type!r} of depth {ec.pos_encoder_depth} is not supported "
            "(only one convolution, as wav2vec 2.0)",
            path,
        )
    pre = ec.norm_order != TransformerNormOrder.POST
    if pre == bool(ec.layer_norm_features):
        raise DataError(
            f"norm_order {ec.norm_order.name} with layer_norm_features={ec.layer_norm_features} is not a published "
            "wav2vec 2.0 layout (post-norm normalises the features, pre-norm does not)",
            path,
        )
    family = Wav2Vec2EncoderConfig(
        input=_input(
            [tuple(d) for d in ec.feature_extractor_layer_descs],
            "layer_norm" if ec.feature_extractor_layer_norm_convs else "group_norm",
            ec.feature_extractor_bias,
            normalize_waveform,
            ec.pos_conv_kernel_size,
            ec.num_pos_conv_groups,
        ),
        dim=ec.model_dim,
        num_layers=ec.num_encoder_layers,
        num_heads=ec.num_encoder_attn_heads,
        ffn_dim=ec.ffn_inner_dim,
        layer_norm_first=pre,
        dropout=float(ec.dropout_p),
        attention_dropout=float(ec.attn_dropout_p),
        activation_dropout=float(ec.ffn_inner_dropout_p),
    )
    state = {f"encoder_frontend.{k}": v for k, v in frontend.state_dict().items()}
    state.update({f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    layer = r"^encoder\.layers\.(\d+)\."
    rules = [
        (r"^encoder_frontend\.feature_extractor\.layers\.(\d+)\.conv\.", r"embedding.frontend.blocks.\1.conv."),
        (
            r"^encoder_frontend\.feature_extractor\.layers\.(\d+)\.(group_norm|layer_norm)\.",
            r"embedding.frontend.blocks.\1.norm.",
        ),
        (r"^encoder_frontend\.post_extract_layer_norm\.", "embedding.frontend_norm."),
        (r"^encoder_frontend\.model_dim_proj\.", "embedding.projection."),
        (r"^encoder_frontend\.pos_encoder\.conv\.", "embedding.conv_positions.conv."),
        (r"^encoder_frontend\.layer_norm\.", "norm."),
        (r"^encoder\.layer_norm\.", "norm."),
        (layer + r"self_attn\.(q_proj|k_proj|v_proj)\.", r"blocks.\1.attention.\2."),
        (layer + r"self_attn\.output_proj\.", r"blocks.\1.attention.out_proj."),
        (layer + r"self_attn_layer_norm\.", r"blocks.\1.attention_norm."),
        (layer + r"ffn\.inner_proj\.", r"blocks.\1.ffn_in."),
        (layer + r"ffn\.output_proj\.", r"blocks.\1.ffn_out."),
        (layer + r"ffn_layer_norm\.", r"blocks.\1.ffn_norm."),
    ]
    weights = _rename(state, rules, path, "fairseq2 wav2vec2 model")
    weights = _rename(weights, [*_WEIGHT_NORM, (r"^", "")], path, "model")
    return family, weights


# --- entry points ---------------------------------------------------------------------------


def _converter(imported: ImportedEncoder, path: Path) -> Callable[[], tuple]:
    from audiossl.interop.fairseq2_encoder import Fairseq2Wav2Vec2Encoder
    from audiossl.interop.torchaudio import TorchaudioEncoder
    from audiossl.interop.transformers import HFSpeechEncoder

    normalize = bool(imported.normalize_waveform)
    if isinstance(imported, HFSpeechEncoder):
        return lambda: convert_transformers(imported.model, normalize_waveform=normalize, path=path)
    if isinstance(imported, TorchaudioEncoder):
        return lambda: convert_torchaudio(imported.model, normalize_waveform=normalize, path=path)
    if isinstance(imported, Fairseq2Wav2Vec2Encoder):
        return lambda: convert_fairseq2(
            imported.encoder_frontend,
            imported.encoder,
            imported.fairseq2_config,
            normalize_waveform=normalize,
            path=path,
        )
    raise DataError(
        f"a {type(imported).__name__} ({imported.source or 'unknown format'}) does not convert into the wav2vec2 "
        "family (convertible: Hugging Face Wav2Vec2/HuBERT/WavLM, torchaudio wav2vec2/HuBERT/WavLM, fairseq2 and "
        "fairseq1 wav2vec2)",
        path,
    )


def convert_imported(imported: ImportedEncoder, path: str | Path = "<model>") -> ConvertedEncoder:
    """An imported (wrapped) model converted into a :class:`Wav2Vec2Encoder` with the same weights."""
    path = Path(path)
    config, weights = _converter(imported, path)()
    encoder, fresh = _build(config, weights, path, imported.source or type(imported).__name__)
    if fresh:
        logger.info("%s: no %s in the checkpoint; kept at its initialisation", path, ", ".join(fresh))
    return ConvertedEncoder(encoder, config, imported.source, int(imported.sample_rate), fresh)


def convert_checkpoint(path: str | Path, *, format: str | None = None) -> ConvertedEncoder:
    """Read a published checkpoint (any importable wav2vec2/HuBERT/WavLM format) and convert it."""
    from audiossl.interop import import_model

    return convert_imported(import_model(path, format=format), path)


__all__ = [
    "HF_CONVERTIBLE",
    "ConvertedEncoder",
    "architecture_overrides",
    "convert_checkpoint",
    "convert_fairseq2",
    "convert_imported",
    "convert_torchaudio",
    "convert_transformers",
]
