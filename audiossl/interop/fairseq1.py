"""fairseq1 wav2vec2 checkpoints (pretrained or CTC fine-tuned), through fairseq2's converters.

The fairseq2 config is derived from fairseq1's own config (``cfg`` or, older, ``args``; for a
fine-tuned file the pretraining config it embeds, ``w2v_args``) and the keys are renamed by
fairseq2's converters (``convert_wav2vec2_state_dict``, ``convert_wav2vec2_asr_state_dict``).
fairseq2 0.8.1's pretraining converter recognises fairseq1 files by a ``mask_emb.weight`` key
and has no rule for the single positional convolution (``encoder.pos_conv.0.*``), while
fairseq1 writes ``mask_emb`` and uses that convolution; :func:`fairseq1_to_fairseq2` fills both
gaps before calling it (the ASR converter has neither gap).
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from audiossl.errors import DataError
from audiossl.interop.base import read_torch_file
from audiossl.interop.fairseq2_encoder import Fairseq2Wav2Vec2Encoder, build_encoder

#: The CTC projection that marks a fine-tuned fairseq1 wav2vec2 checkpoint.
FINE_TUNED_KEY = "w2v_encoder.proj.weight"


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
