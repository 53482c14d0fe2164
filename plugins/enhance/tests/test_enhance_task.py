"""STFT round trip, batch invariance, PIT in the loss, end to end on the synthetic corpus, CLI errors (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from audiossl_enhance.api import run_task
from audiossl_enhance.head import MaskHead
from audiossl_enhance.spectral import StftConfig, align_frames, batch_spectra, istft, stft
from audiossl_enhance.task import EnhancementTask, SeparationTask

from audiossl.cli.main import main
from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.kaldi import read_table
from audiossl.downstream.trainer import DownstreamConfig


def test_istft_of_stft_gives_the_signal_back():
    wave = torch.randn(4000, generator=torch.Generator().manual_seed(0))
    config = StftConfig()
    assert torch.allclose(istft(stft(wave, config), config, wave.numel()), wave, atol=1e-4)


def test_a_padded_batch_equals_each_item_alone():
    generator = torch.Generator().manual_seed(0)
    config = StftConfig(n_fft=256, win_length=200, hop_length=80)
    head = MaskHead(6, config.bins, sources=2, hidden_dim=5, num_layers=2, dropout=0.0).eval()
    waves, lengths = torch.randn(2, 3000, generator=generator), torch.tensor([3000, 1700])
    hidden, hidden_lengths = torch.randn(2, 19, 6, generator=generator), torch.tensor([19, 11])
    waves[1, 1700:] = 0.0
    spec, frames = batch_spectra(waves, lengths, config)
    masks = head(align_frames(hidden, hidden_lengths, frames), frames)  # (B, K, N, F)
    for b in range(2):
        one_spec, one_frames = batch_spectra(waves[b : b + 1, : lengths[b]], lengths[b : b + 1], config)
        one = head(
            align_frames(hidden[b : b + 1, : hidden_lengths[b]], hidden_lengths[b : b + 1], one_frames), one_frames
        )
        assert torch.allclose(spec[b, : one_frames[0]], one_spec[0], atol=1e-5)
        assert torch.allclose(masks[b, :, : one_frames[0]], one[0], atol=1e-5)
        assert float(masks[b, :, one_frames[0] :].detach().abs().sum()) == 0.0


def test_separation_loss_does_not_depend_on_the_order_of_the_sources(mixtures):
    task = SeparationTask(hidden_dim=8, num_layers=1, dropout=0.0)
    dataset = AudioDataset(mixtures, labels=task.labels)
    batch = collate(dataset[[0, 1, 2]])
    head = task.make_head(4, {}).eval()
    hidden = torch.randn(3, 30, 4, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([30, 25, 20])
    first = task.loss(head, hidden, lengths, batch, {}).total.detach()
    batch.labels["src1"], batch.labels["src2"] = batch.labels["src2"], batch.labels["src1"]
    swapped = task.loss(head, hidden, lengths, batch, {}).total.detach()
    assert float(swapped) == pytest.approx(float(first), rel=1e-6)
    enhancement = EnhancementTask(hidden_dim=8, num_layers=1, dropout=0.0)
    batch.labels["clean"] = batch.labels["src1"]
    swapped = enhancement.loss(enhancement.make_head(4, {}).eval(), hidden, lengths, batch, {}).total
    assert torch.isfinite(swapped)


CONFIG = {"max_steps": 10, "lr": 5e-3, "batch_seconds": 20.0, "checkpoint_every": 10, "device": "cpu"}
SMALL = {"hidden_dim": 32, "num_layers": 1, "dropout": 0.0, "plots": 1}


def _config() -> DownstreamConfig:
    return DownstreamConfig(**CONFIG)


def _subset(data_dir: Path, out: Path, count: int = 4) -> Path:
    """The first ``count`` utterances of a pair / mixture dir (scoring every one would cost PESQ time)."""
    keep = list(read_table(data_dir / "wav.scp"))[:count]
    out.mkdir()
    for table in ("wav.scp", "utt2spk", "utt2clean", "utt2src1", "utt2src2"):
        if (data_dir / table).is_file():
            rows = read_table(data_dir / table)
            (out / table).write_text("".join(f"{utt} {rows[utt]}\n" for utt in keep))
    return out


def test_enhancement_end_to_end_improves_on_the_noisy_input(tmp_path, pairs):
    test = _subset(pairs, tmp_path / "test")
    metrics = run_task("se", "fbank", pairs, test, tmp_path / "se", config=_config(), task_options=SMALL)
    assert metrics["SI-SNRi"] > 3.0
    assert metrics["SI-SNR"] > metrics["SI-SNR_noisy"]
    for name in ("PESQ", "STOI", "PESQ_noisy", "STOI_noisy"):
        assert name in metrics
    report = json.loads((tmp_path / "se" / "eval" / "report.json").read_text())
    assert len(report["utterances"]) == 4
    assert len(list((tmp_path / "se" / "eval" / "spectrograms").glob("*.png"))) == 1
    # a finished pair is not recomputed: its metrics come back from disk
    shutil.rmtree(tmp_path / "se" / "run")
    assert run_task("se", "fbank", pairs, test, tmp_path / "se", config=_config(), task_options=SMALL) == metrics


def test_separation_end_to_end_improves_on_the_mixture(tmp_path, mixtures):
    test = _subset(mixtures, tmp_path / "test")
    metrics = run_task("ss", "fbank", mixtures, test, tmp_path / "ss", config=_config(), task_options=SMALL)
    assert metrics["SI-SDRi"] > 1.0
    assert metrics["SI-SDR"] > metrics["SI-SDR_mixture"]


def _run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_cli_refuses_short_input_one_speaker_and_mismatched_pairs(tmp_path, corpus, pairs, capsys):
    code, err = _run(
        [
            "se",
            "train",
            str(pairs),
            "-u",
            "fbank",
            "-o",
            str(tmp_path / "r"),
            "--min-seconds",
            "30",
            "--max-steps",
            "1",
        ],
        capsys,
    )
    assert code == 2 and "needs at least 30.0 s" in err and "wav.scp:1" in err and "Traceback" not in err
    one = tmp_path / "one"
    shutil.copytree(corpus, one)
    (one / "utt2spk").write_text("".join(f"{utt} spk01\n" for utt in read_table(corpus / "utt2spk")))
    (one / "spk2utt").unlink()
    code, err = _run(["ss", "make-mixtures", str(one), "-o", str(tmp_path / "m")], capsys)
    assert code == 2 and "only one speaker" in err and "utt2spk" in err
    broken = tmp_path / "broken"
    shutil.copytree(pairs, broken)
    table = read_table(broken / "utt2clean")
    first = next(iter(table))
    table[first] = str(tmp_path / "missing.wav")
    (broken / "utt2clean").write_text("".join(f"{utt} {path}\n" for utt, path in table.items()))
    code, err = _run(
        ["se", "train", str(broken), "-u", "fbank", "-o", str(tmp_path / "r2"), "--max-steps", "1"], capsys
    )
    assert code == 2 and "utt2clean:1" in err and "not found" in err


def test_targets_follow_the_upstream_rate_in_training(pairs):
    """16 kHz pairs under an 8 kHz upstream: the loss reads each target resampled like its input."""
    import soundfile
    import torchaudio

    task = EnhancementTask(hidden_dim=8, num_layers=1, dropout=0.0)
    task.upstream_info = {"sample_rate": 8000}  # what train_downstream sets before training
    batch = collate(AudioDataset(pairs, sample_rate=8000, labels=task.labels)[[0, 1]])
    targets = task.targets(batch, sample_rate=8000)
    for b, waves in enumerate(targets):
        assert waves.shape == (1, int(batch.lengths[b]))
        clean, rate = soundfile.read(batch.labels["clean"][b], dtype="float32")
        assert rate == 16000
        expected = torchaudio.functional.resample(torch.from_numpy(clean), rate, 8000)
        assert torch.allclose(waves[0], expected, atol=1e-4)
    head = task.make_head(4, {}).eval()
    frames = int(batch.lengths.max()) // 80
    hidden = torch.randn(2, frames, 4, generator=torch.Generator().manual_seed(0))
    loss = task.loss(head, hidden, torch.tensor([frames, frames]), batch, {}).total
    assert torch.isfinite(loss)
    task.upstream_info = None  # without the upstream's rate the 16 kHz targets cannot match 8 kHz inputs
    with pytest.raises(Exception, match="clean and noisy must match"):
        task.loss(head, hidden, torch.tensor([frames, frames]), batch, {})
