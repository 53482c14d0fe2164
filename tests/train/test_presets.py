"""Every shipped preset trains for two steps on synthetic speech, shrunk to a tiny width and depth."""

from __future__ import annotations

import math

import pytest

from audiossl.train import list_presets, load_pretrained, pretrain, resolve_config
from audiossl.train.logging import read_records

#: Per encoder family: width 32, two blocks, small inner sizes.
SHRINK = {
    "ast": ["encoder.overrides.num_heads=4"],
    "mamba": ["encoder.overrides.d_state=4", "encoder.overrides.chunk_size=8"],
    "conformer": ["encoder.overrides.num_heads=4", "encoder.overrides.ffn_dim=64", "encoder.overrides.conv_kernel=5"],
    "speecht5": ["encoder.overrides.num_heads=4", "encoder.overrides.ffn_dim=64"],
    "wav2vec2": ["encoder.overrides.num_heads=4", "encoder.overrides.ffn_dim=64"],
}

#: Per objective: a small codebook and head.
SMALL_OBJECTIVE = {
    "mspm": [],
    "wav2vec2": [
        "objective.config.quantizer.entries=16",
        "objective.config.quantizer.code_dim=32",
        "objective.config.project_dim=32",
        "objective.config.num_negatives=10",
    ],
}
SMALL_OBJECTIVE["w2vbert"] = [*SMALL_OBJECTIVE["wav2vec2"], "objective.config.contrastive_layer=1"]
SMALL_OBJECTIVE["hubert"] = [
    "objective.config.code_dim=16",
    "objective.config.mask.span_length=3",
    "objective.config.mask.min_spans=1",
]

SMALL_OBJECTIVE["speecht5"] = [
    *SMALL_OBJECTIVE["hubert"],
    "objective.config.backbone.decoder_layers=1",
    "objective.config.backbone.speech.hidden_dim=16",
    "objective.config.backbone.speech.postnet_channels=16",
    "objective.config.vq_entries=16",
]

SMALL_OBJECTIVE["dino"] = [
    "objective.config.global_seconds=0.6",
    "objective.config.local_seconds=0.4",
    "objective.config.local_crops=2",
    "objective.config.head_hidden_dim=32",
    "objective.config.bottleneck_dim=16",
    "objective.config.num_prototypes=64",
    "objective.config.momentum_steps=2",
    "data.min_utt_seconds=0.6",
]

# issue 20 (H4): the new objectives, small; wavlm's preset has `labels`, so it trains on k-means labels here.
SMALL_OBJECTIVE["data2vec"] = ["objective.config.top_k=2", "objective.config.mask.span_length=3"]
SMALL_OBJECTIVE["bestrq"] = ["objective.config.quantizer.codebook_size=32", "objective.config.mask.span_length=3"]
SMALL_OBJECTIVE["wavlm"] = [*SMALL_OBJECTIVE["hubert"], "objective.config.mix.prob=1.0"]
SMALL_OBJECTIVE["distill"] = ["objective.config.teacher_layers=[1,2]"]


def cluster_labels(data_dir, out):
    """A label dir of ``data_dir`` for objectives that predict cluster labels (MFCC k-means, k=8)."""
    from audiossl.cluster.kmeans import KMeansConfig
    from audiossl.cluster.pipeline import FitConfig, fit_kmeans_dir, label_with_kmeans_dir

    kmeans = KMeansConfig(n_clusters=8, batch_size=256, n_init=1, max_iter=2)
    fit_kmeans_dir([data_dir], out / "kmeans", FitConfig(kmeans=kmeans), progress=False)
    label_with_kmeans_dir(out / "kmeans", data_dir, out / "labels", progress=False)
    return out / "labels"


COMMON = [
    "encoder.overrides.dim=32",
    "encoder.overrides.num_layers=2",
    "encoder.overrides.input.num_bins=32",
    "encoder.overrides.input.conv_pos_kernel=8",
    "encoder.overrides.input.conv_pos_groups=4",
    "data.frontend_config.num_mel_bins=32",
    "data.num_workers=0",
    "data.max_seconds_per_batch=4",
    "run.max_steps=2",
    "run.log_every=1",
    "run.device=cpu",
    "run.tensorboard=false",
]


@pytest.mark.parametrize("name", [name for name, _ in list_presets()])
def test_preset_trains_two_steps(name, synth_dir, tmp_path):
    base = resolve_config(name)
    sets = COMMON + SHRINK[base.encoder.family] + SMALL_OBJECTIVE[base.objective.name]
    if "labels" in base.objective.config:
        sets.append(f"objective.config.labels={cluster_labels(synth_dir, tmp_path)}")
    if "teacher" in base.objective.config:  # distillation: a tiny pretrained teacher
        from audiossl.testing.downstream import tiny_pretrained

        sets.append(f"objective.config.teacher={tiny_pretrained(tmp_path / 'teacher', synth_dir)}")
    config = resolve_config(name, sets)
    result = pretrain(config, [synth_dir], tmp_path / "run")
    assert result.step == 2 and result.stopped_by is None
    records = read_records(tmp_path / "run" / "train.jsonl")
    assert [record["step"] for record in records] == [1, 2]
    assert all(math.isfinite(record["loss"]) and record["parts"] for record in records)
    model = load_pretrained(tmp_path / "run")
    assert model.encoder.dim == 32 and model.encoder.num_layers == 2
