"""NeuCoSVC end to end on synthetic singing: train (exact resume), convert, evaluate, refuse bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from audiossl.cli.main import main
from audiossl.data.singing import SingingConfig, synthesize_singing
from audiossl_vc.pitch import extract_f0


@pytest.fixture(scope="module")
def singing(tmp_path_factory):
    """Two singers x three short songs at 16 kHz with utt2f0."""
    out = tmp_path_factory.mktemp("vc-sing") / "data"
    synthesize_singing(out, SingingConfig(singers=2, songs_per_singer=3, seed=1, words_per_song=(1, 2)))
    return out


def _train(model, data, out, steps, resume=False):
    args = ["vc", "train-vocoder", "--model", str(model), "--data", str(data), "--out", str(out), "--kind", "neucosvc"]
    args += ["--steps", str(steps), "--batch-size", "2", "--segment-frames", "8", "--checkpoint-every", "2"]
    args += ["--max-utterances", "2"]
    return main([*args, "--resume"] if resume else args)


@pytest.fixture(scope="module")
def neucosvc_run(vc_checkpoint, singing, tmp_path_factory):
    """Three steps in one go, on one thread (module fixtures run before the per-test thread setting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("neucosvc") / "run"
        assert _train(vc_checkpoint, singing, run, 3) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def test_resumed_training_equals_an_uninterrupted_run(neucosvc_run, vc_checkpoint, singing, tmp_path):
    resumed_run = tmp_path / "resumed"
    assert _train(vc_checkpoint, singing, resumed_run, 2) == 0
    assert _train(vc_checkpoint, singing, resumed_run, 3) == 2  # checkpoints there: refused without --resume
    assert _train(vc_checkpoint, singing, resumed_run, 3, resume=True) == 0
    resumed = torch.load(resumed_run / "ckpt-00000003.pt", map_location="cpu", weights_only=False)
    uninterrupted = torch.load(neucosvc_run / "ckpt-00000003.pt", map_location="cpu", weights_only=False)
    assert resumed["vocoder"]["kind"] == "neucosvc"
    for part in ("model", "discriminators"):
        for name, value in uninterrupted[part].items():
            torch.testing.assert_close(resumed[part][name], value, msg=name)


def _convert_args(source, target, model, run, out):
    return ["vc", "convert", str(source), "--target", str(target), "--model", str(model), "--vocoder", str(run),
            "-o", str(out), "--min-seconds", "3"]  # fmt: skip


def test_convert_sings_the_source_melody_shifted(neucosvc_run, vc_checkpoint, singing, tmp_path, capsys):
    source = singing / "wav" / "sgr01-0001.wav"
    target = tmp_path / "target"
    target.mkdir()
    for song in ("sgr02-0001", "sgr02-0002", "sgr02-0003"):
        (target / f"{song}.wav").symlink_to(singing / "wav" / f"{song}.wav")
    out = tmp_path / "sung.wav"
    assert main([*_convert_args(source, target, vc_checkpoint, neucosvc_run, out), "--key-shift", "3"]) == 0
    assert "key shift +3 semitones" in capsys.readouterr().out
    info, source_info = soundfile.info(out), soundfile.info(source)
    assert info.samplerate == 16000 and 0 <= source_info.frames - info.frames < 320  # whole frames of 320
    samples = soundfile.read(out)[0]
    assert np.isfinite(samples).all() and samples.std() > 1e-4


def test_bad_input_is_refused_with_exit_2_naming_the_file(neucosvc_run, vc_checkpoint, singing, tmp_path, capsys):
    source = singing / "wav" / "sgr01-0001.wav"
    target = singing / "wav" / "sgr02-0001.wav"
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000), 16000)
    pool = [str(singing / "wav" / f"sgr02-000{i}.wav") for i in (1, 2, 3)]
    args = ["vc", "convert", str(silent), "--model", str(vc_checkpoint), "--vocoder", str(neucosvc_run)]
    args += ["-o", str(tmp_path / "x.wav"), "--min-seconds", "3"]
    for item in pool:
        args += ["--target", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no voiced frames" in err and str(silent) in err and "Traceback" not in err

    too_short = _convert_args(source, target, vc_checkpoint, neucosvc_run, tmp_path / "y.wav")
    assert main([*too_short, "--min-seconds", "60"]) == 2
    err = capsys.readouterr().err
    assert "too little target speech" in err and str(target) in err

    far = _convert_args(source, target, vc_checkpoint, neucosvc_run, tmp_path / "z.wav")
    assert main([*far, "--key-shift", "30"]) == 2
    assert "beyond the sane range" in capsys.readouterr().err

    other_rate = tmp_path / "other-rate"
    other_rate.mkdir()
    state = torch.load(neucosvc_run / "ckpt-00000003.pt", map_location="cpu", weights_only=False)
    state["vocoder"]["sample_rate"] = 22050  # as if trained on another encoder's rate
    torch.save(state, other_rate / "ckpt-00000003.pt")
    assert main(_convert_args(source, target, vc_checkpoint, other_rate, tmp_path / "w.wav")) == 2
    err = capsys.readouterr().err
    assert "rate 22050" in err and "other-rate" in err
    assert not list(tmp_path.glob("[wxyz].wav"))


def test_evaluate_scores_pitch_against_utt2f0_side_by_side(neucosvc_run, vc_checkpoint, singing, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["vc", "evaluate", "--model", str(vc_checkpoint), "--vocoder", str(neucosvc_run)]
    args += ["--vocoder", str(neucosvc_run), "--data", str(singing), "--out", str(out), "--pairs", "1"]
    assert main([*args, "--min-seconds", "1"]) == 0
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert [row["system"] for row in rows] == ["neucosvc:run", "neucosvc:run#1"]
    metrics = json.loads((out / "neucosvc-run" / "metrics.json").read_text())
    assert set(metrics["pitch"]) >= {"converted", "resynthesis", "source_vs_reference", "converted_vs_reference"}
    # same pairs, same vocoder: same scores (an untrained vocoder may sing nothing pYIN calls voiced: NaN RMSE)
    assert rows[0]["vde"] == rows[1]["vde"]
    assert rows[0]["f0_rmse_cents"] == pytest.approx(rows[1]["f0_rmse_cents"], nan_ok=True)
    # the source tracked by pYIN against the sung reference: the tracker itself is accurate on clean singing
    assert metrics["pitch"]["source_vs_reference"]["f0_rmse_cents"] < 50
    pair = metrics["pairs"][0]
    converted = soundfile.read(out / "neucosvc-run" / "converted" / "wav" / "pair000.wav")[0]
    f0, _ = extract_f0(torch.from_numpy(converted), 16000, 320)
    assert (
        pair["pitch"]["converted"]["vde"] == pytest.approx(metrics["pitch"]["converted"]["vde"])
        and f0.shape[0] == len(converted) // 320
    )
    assert "F0 RMSE (cents)" in (out / "comparison.md").read_text()
