"""Mask pictures: token masks of a config's objective mapped back onto spectrogram cells."""

from __future__ import annotations

import torch

from audiossl.cli.main import main
from audiossl.train.config import resolve_config
from audiossl.train.maskplot import mask_cells


def test_patch_mask_covers_whole_aligned_patches():
    config = resolve_config("mspm-ast-tiny", ["objective.config.mask.count=10", "objective.config.mask.ratio=null"])
    features = torch.randn(100, 80)  # 6 time x 5 frequency patches of 16 x 16; frames 96-99 in no patch
    cells = mask_cells(config, features, seed=3)
    assert cells.shape == (100, 80)
    assert int(cells.sum()) == 10 * 16 * 16  # ten whole, non-overlapping patches
    assert not cells[96:].any()
    blocks = cells[:96].reshape(6, 16, 5, 16)  # (time patch, frame, freq patch, channel)
    per_patch = blocks.sum(dim=(1, 3))  # (6, 5)
    assert set(per_patch.flatten().tolist()) <= {0, 256}  # each patch all in or all out
    assert not torch.equal(cells, mask_cells(config, features, seed=4))  # the seed draws the mask


def test_frame_mask_marks_whole_stacked_frames():
    config = resolve_config(
        "mspm-ast-tiny", ["encoder.overrides.input.kind=frame", "encoder.overrides.input.frame_stack=2"]
    )
    features = torch.randn(61, 80)  # 30 tokens of 2 frames; frame 60 is in none
    cells = mask_cells(config, features, seed=0)
    assert (cells == cells[:, :1]).all()  # whole frames
    rows = cells[:60, 0].reshape(30, 2)
    assert (rows[:, 0] == rows[:, 1]).all() and not cells[60].any()
    assert 0 < int(rows[:, 0].sum()) < 30


def test_cli_plot_with_config(tmp_path):
    from audiossl.data.synth import SynthConfig, synthesize_corpus

    synthesize_corpus(tmp_path / "data", SynthConfig(speakers=1, utts_per_speaker=1))
    out = tmp_path / "mask.png"
    assert main(["features", "plot", str(tmp_path / "data"), "--out", str(out), "--config", "mspm-ast-tiny"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = ["features", "plot", str(tmp_path / "data"), "--out", str(out), "--set", "run.seed=1"]
    assert main(args) == 2
