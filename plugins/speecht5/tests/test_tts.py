"""TTS end to end on the synthetic corpus: train, resume, synthesize, evaluate (MCD), a mel vocoder; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiossl.cli.main import main
from audiossl.data.kaldi import read_table
from audiossl.errors import DataError
from audiossl_speecht5.speech import speech_decoder_loss
from audiossl_speecht5.tts import TTSConfig, load_tts, synthesize_mels, train_tts

SMALL = ["--dim", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--batch-seconds", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tts") / "run"
    code = main(["tts", "train", str(corpus), "--out", str(out), *SMALL, "--max-steps", "2", "--log-every", "1",
                 "--max-frames", "400"])  # fmt: skip
    assert code == 0
    return out


def test_train_writes_a_resumable_run(run, corpus) -> None:
    description = json.loads((run / "tts.json").read_text())
    assert description["speakers"] == sorted(set(read_table(corpus / "utt2spk").values()))
    records = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    assert [r["step"] for r in train] == [1, 2] and set(train[0]["parts"]) == {"l1_before", "l1_after", "stop"}
    code = main(["tts", "train", str(corpus), "--out", str(run), *SMALL, "--max-steps", "3", "--log-every", "1",
                 "--max-frames", "400", "--resume"])  # fmt: skip
    assert code == 0 and (run / "ckpt-00000003.pt").is_file()


def test_synthesize_writes_a_wav_in_the_chosen_voice(run, corpus, tmp_path) -> None:
    words = next(iter(read_table(corpus / "text").values()))
    out = tmp_path / "say.wav"
    code = main(["tts", "synthesize", str(run), words, "--speaker", "spk02", "-o", str(out), "--max-frames", "20",
                 "--save-mel"])  # fmt: skip
    assert code == 0
    wave, rate = sf.read(out)
    mel = np.load(out.with_suffix(".npy"))
    assert rate == 16000 and mel.shape[1] == 80 and len(wave) == mel.shape[0] * 160
    description, model = load_tts(run)
    torch.manual_seed(0)
    again = synthesize_mels(model, description, [words], ["spk02"], max_frames=20)[0]
    assert np.allclose(again.numpy(), mel, atol=1e-5)  # same seed, same pre-net dropout: same speech


def test_unknown_speaker_and_unknown_characters_exit_2(run, corpus, tmp_path, capsys) -> None:
    word = next(iter(read_table(corpus / "text").values())).split()[0]
    code = main(["tts", "synthesize", str(run), word, "--speaker", "nobody", "-o", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown speaker 'nobody'" in err and "spk01" in err and "Traceback" not in err
    assert not (tmp_path / "x.wav").exists()
    code = main(["tts", "synthesize", str(run), f"{word} #", "--speaker", "spk01", "-o", str(tmp_path / "y.wav")])
    assert code == 2 and "cannot represent: ['#']" in capsys.readouterr().err


def test_utterances_longer_than_the_decoder_are_named(corpus, tmp_path) -> None:
    durations = {utt: float(v) for utt, v in read_table(corpus / "utt2dur").items()}
    limit = 150
    long = sorted(utt for utt, d in durations.items() if round(d * 16000) // 160 > limit)
    assert long, "the tiny corpus has utterances over 1.5 s"
    config = TTSConfig(dim=32, encoder_layers=1, decoder_layers=1, max_steps=1, device="cpu", max_frames=limit)
    with pytest.raises(DataError, match=f"maximum of {limit} mel frames") as caught:
        train_tts(corpus, tmp_path / "run", config)
    assert repr(long[0]) in str(caught.value) and caught.value.path == str(corpus / "wav.scp")
    assert not list((tmp_path / "run").glob("ckpt-*"))


def test_evaluate_scores_synthesis_and_resynthesis(run, corpus, tmp_path) -> None:
    out = tmp_path / "eval"
    code = main(["tts", "evaluate", str(run), str(corpus), "--out", str(out), "--max-frames", "30"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    utts = set(read_table(corpus / "wav.scp"))
    assert set(read_table(out / "synth" / "wav.scp")) == utts and set(read_table(out / "resynth" / "text")) == utts
    assert metrics["synth_mcd"] > metrics["resynth_mcd"] > 0  # an untrained model is worse than its vocoder alone


def test_speech_decoder_loss_counts_valid_frames_only() -> None:
    from audiossl.models.speecht5 import MelOutput

    target = torch.randn(2, 6, 4)
    lengths = torch.tensor([6, 3])
    before, after, stop = torch.randn(2, 6, 4), torch.randn(2, 6, 4), torch.randn(2, 6)
    loss = speech_decoder_loss(MelOutput(before, after, stop), target, lengths, stop_weight=5.0)
    l1 = [(before[0] - target[0]).abs().mean() * 24 + (before[1, :3] - target[1, :3]).abs().mean() * 12]
    assert float(loss.parts["l1_before"]) == pytest.approx(float(l1[0] / 36), rel=1e-5)
    terms = []
    for item, n in enumerate([6, 3]):
        for frame in range(n):
            p = torch.sigmoid(stop[item, frame])
            terms.append(-5.0 * torch.log(p) if frame == n - 1 else -torch.log(1 - p))
    assert float(loss.parts["stop"]) == pytest.approx(float(sum(terms) / len(terms)), rel=1e-5)


def test_unknown_characters_in_a_test_text_are_named_with_their_line(run, corpus, tmp_path, capsys) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(corpus, data, ignore=shutil.ignore_patterns("wav"))
    lines = (data / "text").read_text().splitlines()
    lines[2] = lines[2] + " x7"
    (data / "text").write_text("\n".join(lines) + "\n")
    code = main(["tts", "evaluate", str(run), str(data), "--out", str(tmp_path / "ev"), "--max-frames", "5"])
    err = capsys.readouterr().err
    assert code == 2 and f"{data / 'text'}:3" in err and "cannot represent" in err and "Traceback" not in err
    assert not (tmp_path / "ev").exists()  # nothing half-written


@pytest.mark.parametrize("kind", ["mel-gl", "hifigan"])
def test_a_vc_vocoder_trained_on_log_mels_renders_synthesis(kind, run, corpus, tmp_path) -> None:
    from audiossl_vc.vocoder import load_vocoder

    voc = tmp_path / "voc"
    code = main(["tts", "train-vocoder", str(corpus), "--out", str(voc), "--kind", kind, "--steps", "1",
                 "--batch-size", "2", "--segment-frames", "8"])  # fmt: skip
    assert code == 0
    vocoder = load_vocoder(voc)
    assert (vocoder.spec.in_dim, vocoder.spec.hop, vocoder.spec.kind) == (80, 160, kind)
    out = tmp_path / "v.wav"
    word = next(iter(read_table(corpus / "text").values())).split()[0]
    code = main(["tts", "synthesize", str(run), word, "--speaker", "spk01", "-o", str(out), "--max-frames", "12",
                 "--vocoder", str(voc), "--save-mel"])  # fmt: skip
    assert code == 0
    wave, _ = sf.read(out)
    assert len(wave) == np.load(out.with_suffix(".npy")).shape[0] * 160 and np.isfinite(wave).all()
