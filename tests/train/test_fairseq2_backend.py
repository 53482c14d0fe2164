"""``data.backend: fairseq2``: the same batches, features, losses and resume as the default loader.

The default loader (torch DataLoader over AudioDataset, soundfile) is the reference throughout:
the fairseq2 backend must give identical batches (ids, order, crops, waveforms) because it
reuses our sampler and crop windows and only hands the decoding (and optionally the fbank)
to fairseq2's C++ pipeline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from train_helpers import SAMPLE_RATE, parameters, tiny_config, write_data_dir

from audiossl.audio.augment import SpecAugmentConfig
from audiossl.data.kaldi import DataDir, Segment
from audiossl.errors import AudioError, ConfigError, DataError
from audiossl.objectives.base import pipeline_features
from audiossl.train import pretrain
from audiossl.train.config import DataConfig, PretrainConfig, config_from_dict, frontend_settings
from audiossl.train.data import TrainData, create_train_data
from audiossl.train.inputs import InputPipeline
from audiossl.train.logging import read_records

pytest.importorskip("fairseq2.data", reason="fairseq2 is an optional extra: pip install 'audiossl[fairseq2]'")

from audiossl.train.fairseq2_data import Fairseq2TrainData  # noqa: E402

FSDD = Path(__file__).resolve().parents[2] / "../shared/data/fsdd/recordings"


@pytest.fixture(scope="module")
def mixed_dirs(tmp_path_factory) -> list[Path]:
    """Two data dirs: 16-bit mono tones (one too short to keep) and a stereo 24-bit WAV plus a FLAC."""
    first = write_data_dir(tmp_path_factory.mktemp("first"), [0.6, 1.5, 1.2, 0.05, 0.9, 2.5], seed=3)
    root = tmp_path_factory.mktemp("second")
    rng = np.random.default_rng(7)
    data = DataDir(utt2dur={})
    for name, seconds, channels, suffix, subtype in [
        ("b-stereo", 1.7, 2, "wav", "PCM_24"),
        ("b-flac", 0.8, 1, "flac", "PCM_16"),
        ("b-float", 1.3, 1, "wav", "FLOAT"),
    ]:
        samples = round(seconds * SAMPLE_RATE)
        wave = 0.2 * rng.standard_normal((samples, channels)).astype(np.float32)
        path = root / f"{name}.{suffix}"
        soundfile.write(path, wave, SAMPLE_RATE, subtype=subtype)
        data.wav_scp[name] = str(path)
        data.utt2dur[name] = samples / SAMPLE_RATE
    data.save(root / "data")
    return [first, root / "data"]


def data_config(**changes) -> DataConfig:
    settings = dict(
        sample_rate=SAMPLE_RATE,
        max_seconds_per_batch=3.0,
        max_utt_seconds=1.0,
        min_utt_seconds=0.1,
        num_workers=0,
        frontend_config={"num_mel_bins": 32},
    )
    return DataConfig(**{**settings, **changes})


def assert_same_batch(expected, got) -> None:
    assert got.ids == expected.ids
    assert torch.equal(got.lengths, expected.lengths)
    assert torch.equal(got.offsets, expected.offsets)
    assert got.waveforms.shape == expected.waveforms.shape
    torch.testing.assert_close(got.waveforms, expected.waveforms, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("rank", "world_size", "workers"), [(0, 1, 0), (1, 2, 2)])
def test_same_batches_as_the_default_loader(mixed_dirs, rank, world_size, workers):
    options = dict(seed=5, rank=rank, world_size=world_size)
    default = TrainData(mixed_dirs, data_config(), **options)
    ours = create_train_data(mixed_dirs, data_config(backend="fairseq2", num_workers=workers), **options)
    assert isinstance(ours, Fairseq2TrainData)
    assert ours.ids == default.ids and len(ours) == len(default) and "spk0-utt03" not in ours.ids  # 0.05 s skipped
    seen = set()
    for (expected, epoch, index), (got, got_epoch, got_index) in zip(default, ours, strict=False):
        assert (got_epoch, got_index) == (epoch, index)
        assert_same_batch(expected, got)
        assert got.features is None
        seen.update(got.ids)
        if epoch == 3:
            break
    assert {"b-stereo", "b-flac", "b-float"} & seen  # the stereo/24-bit/FLAC/float files went through
    # A validation pass over the current epoch, from its start.
    for (expected, index), (got, got_index) in zip(default.epoch_batches(), ours.epoch_batches(), strict=True):
        assert got_index == index
        assert_same_batch(expected, got)


def test_resume_mid_epoch_gives_the_batches_that_followed(mixed_dirs):
    config = data_config(backend="fairseq2", max_seconds_per_batch=2.0)
    straight = Fairseq2TrainData(mixed_dirs, config, seed=1)
    stream = iter(straight)
    for _ in range(len(straight) + 2):  # into the second epoch
        next(stream)
    state = straight.state_dict()
    following = [next(stream) for _ in range(len(straight))]  # crosses into the third epoch
    resumed = Fairseq2TrainData(mixed_dirs, config, seed=1)
    resumed.load_state_dict(state)
    for (expected, epoch, index), (got, got_epoch, got_index) in zip(following, resumed, strict=False):
        assert (got_epoch, got_index) == (epoch, index)
        assert_same_batch(expected, got)
    assert state["epoch"] == 1 and state["position"] == 2


def fsdd_dir(tmp_path: Path, count: int = 24) -> Path:
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD}")
    data = DataDir()
    for path in sorted(FSDD.glob("*.wav"))[:count]:
        data.wav_scp[path.stem] = str(path)
    data.save(tmp_path / "fsdd")
    return tmp_path / "fsdd"


@pytest.mark.parametrize("normalize", ["utterance", "none"])
def test_fairseq2_fbank_equals_our_fbank_through_the_input_pipeline(tmp_path, normalize):
    """Real FSDD speech (8 kHz, 80 bins), SpecAugment on: ``batch_inputs`` gives the same inputs either way."""
    config = data_config(
        sample_rate=8000,
        max_seconds_per_batch=4.0,
        max_utt_seconds=None,
        frontend_config={"num_mel_bins": 80},
        normalize=normalize,
        spec_augment=SpecAugmentConfig(time_width=10, freq_width=8),
        backend="fairseq2",
        fairseq2_fbank=True,
        num_workers=2,
    )
    pipeline = InputPipeline(config, frontend_settings(PretrainConfig(data=config))).train()
    loader = Fairseq2TrainData([fsdd_dir(tmp_path)], config, seed=0)
    differences, frames = [], 0
    for batch, index in loader.epoch_batches():
        assert batch.features is not None and batch.features.shape[-1] == 80
        expected, expected_lengths = pipeline(batch.waveforms, batch.lengths, torch.Generator().manual_seed(index))
        features, lengths = pipeline_features(batch, pipeline, torch.Generator().manual_seed(index))
        kwargs = {"features": features, "lengths": lengths}  # what Objective.batch_inputs gives
        assert torch.equal(kwargs["lengths"], expected_lengths)
        assert kwargs["features"].shape == expected.shape
        differences.append((kwargs["features"] - expected).abs().flatten())
        frames += int(expected_lengths.sum())
    assert frames > 500
    # kaldi-native-fbank vs our FFT: the weakest mel bins differ by rounding (bench/fbank.py: 5e-4 at
    # most); over all 3000 FSDD files the worst is 1.1e-3 raw, 5e-4 after CMVN, the 99.9th percentile < 1e-4.
    differences = torch.cat(differences)
    assert float(differences.max()) < 2e-3
    assert float(differences.quantile(0.999)) < 2e-4


def test_precomputed_features_skip_the_frontend_but_not_normalisation():
    config = data_config(frontend_config={"num_mel_bins": 32}, normalize="utterance")
    pipeline = InputPipeline(config, frontend_settings(PretrainConfig(data=config)))
    features = torch.randn(2, 7, 32) * 3 + 5  # (B, F, C)
    feature_lengths = torch.tensor([7, 4])
    garbage = torch.full((2, 100), float("nan"))  # never read
    out, lengths = pipeline(garbage, torch.tensor([100, 60]), features=features, feature_lengths=feature_lengths)
    assert torch.equal(lengths, feature_lengths)
    valid = out[1, :4]
    torch.testing.assert_close(valid.mean(dim=0), torch.zeros(32), atol=1e-5, rtol=0)  # per-utterance CMVN
    assert torch.all(out[1, 4:] == 0)
    with pytest.raises(ValueError, match="channels"):
        pipeline(garbage, lengths, features=features[..., :16], feature_lengths=feature_lengths)


def losses(run_dir: Path) -> list[float]:
    return [record["loss"] for record in read_records(run_dir / "train.jsonl")]


def test_pretraining_gives_the_same_losses_and_resumes(varied_dir, tmp_path):
    config = tiny_config(run={"max_steps": 4})
    default = pretrain(config, [varied_dir], tmp_path / "default")
    fairseq2 = pretrain(tiny_config(data={"backend": "fairseq2"}, run={"max_steps": 4}), [varied_dir], tmp_path / "f2")
    assert len(losses(default.run_dir)) == 4
    assert losses(fairseq2.run_dir) == losses(default.run_dir)  # our front-end on identical batches: exact

    fbank = tiny_config(data={"backend": "fairseq2", "fairseq2_fbank": True}, run={"max_steps": 4})
    features = pretrain(fbank, [varied_dir], tmp_path / "f2-fbank")
    np.testing.assert_allclose(losses(features.run_dir), losses(default.run_dir), rtol=1e-3, atol=1e-4)

    def stop_at_2(trainer) -> None:
        if trainer.step == 2:
            trainer.request_stop()

    pretrain(fbank, [varied_dir], tmp_path / "split", callbacks=[stop_at_2])
    resumed = pretrain(fbank, [varied_dir], tmp_path / "split", resume=True)
    assert resumed.step == 4
    expected, got = parameters(tmp_path / "f2-fbank", 4), parameters(tmp_path / "split", 4)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------- refusals


def test_segments_and_pipes_are_refused_naming_the_file(tmp_path, varied_dir):
    source = DataDir.load(varied_dir)
    first = source.utterance_ids[0]
    with_segments = DataDir(wav_scp={"reco": source.wav_scp[first]}, segments={"seg": Segment("reco", 0.0, 0.5)})
    with_segments.save(tmp_path / "segments")
    with pytest.raises(ConfigError, match="segments.*data.backend: default") as caught:
        Fairseq2TrainData([tmp_path / "segments"], data_config(backend="fairseq2"))
    assert Path(caught.value.path) == tmp_path / "segments" / "segments"

    piped = DataDir(wav_scp=dict(source.wav_scp))  # no utt2dur: durations would come from running the pipe
    last = source.utterance_ids[-1]
    marker = tmp_path / "pipe-ran"
    piped.wav_scp[last] = f"touch {marker} && cat {source.wav_scp[last]} |"
    piped.save(tmp_path / "piped")
    with pytest.raises(ConfigError, match="pipes") as caught:
        Fairseq2TrainData([tmp_path / "piped"], data_config(backend="fairseq2"))
    assert Path(caught.value.path) == tmp_path / "piped" / "wav.scp"
    assert caught.value.line == len(source.utterance_ids)  # the last line
    assert not marker.exists()  # refused before anything was read
    with pytest.raises(AudioError, match="refused"):  # the default backend refuses pipes by default too
        TrainData([tmp_path / "piped"], data_config())
    assert not marker.exists()
    TrainData([tmp_path / "piped"], data_config(allow_pipes=True))  # and reads them when the config allows
    assert marker.exists()


def test_another_sample_rate_is_a_data_error_when_read(varied_dir):
    loader = Fairseq2TrainData([varied_dir], data_config(backend="fairseq2", sample_rate=8000))
    with pytest.raises(DataError, match="16000 Hz but data.sample_rate is 8000.*does not resample"):
        next(iter(loader))


def test_fbank_settings_fairseq2_cannot_compute_are_refused():
    with pytest.raises(ConfigError, match="needs data.backend: fairseq2"):
        data_config(fairseq2_fbank=True)
    base = {"backend": "fairseq2", "fairseq2_fbank": True}
    with pytest.raises(ConfigError, match="window"):
        config_from_dict({"data": {**base, "frontend_config": {"window": "hamming"}}})
    with pytest.raises(ConfigError, match="frontend: fbank"):
        config_from_dict({"data": {**base, "frontend": "log_mel"}})
    config_from_dict({"data": {**base, "frontend_config": {"num_mel_bins": 80}}})  # allowed


def test_missing_fairseq2_asks_for_the_extra(varied_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "fairseq2.data", None)
    with pytest.raises(ConfigError, match=r"pip install 'audiossl\[fairseq2\]'"):
        create_train_data([varied_dir], data_config(backend="fairseq2"))
