"""Feature streams and frame labels: labels line up with frames, rates are recorded, misalignment stops."""

from __future__ import annotations

import pytest
import torch

from audiossl.audio.frontends import create_frontend
from audiossl.cluster.features import (
    EncoderFeatures,
    FeatureDump,
    dump_features,
    frame_rate,
    frames,
    resolve_source,
    stream_features,
)
from audiossl.cluster.kmeans import KMeans, KMeansConfig
from audiossl.cluster.labels import (
    check_label_alignment,
    convert_label_rate,
    label_data_dir,
    read_labels,
    write_labels,
)
from audiossl.data.kaldi import DataDir
from audiossl.data.synth import SynthConfig, synthesize_corpus
from audiossl.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize_corpus(out, SynthConfig(speakers=2, utts_per_speaker=2))
    return out


def num_samples(data_dir) -> dict[str, int]:
    return DataDir.load(data_dir).utt2num_samples


def fitted(dim: int, n_clusters: int = 6, data=None) -> KMeans:
    points = data if data is not None else torch.randn(500, dim, generator=torch.Generator().manual_seed(0))
    return KMeans(KMeansConfig(n_clusters=n_clusters, batch_size=128, max_iter=3, n_init=1)).fit(points)


def test_mfcc_labels_line_up_with_frames(synth_dir, tmp_path):
    source = resolve_source("mfcc")
    assert source.num_channels == 39  # HuBERT's MFCC + deltas + delta-deltas
    with pytest.raises(ConfigError, match="learned weights"):
        resolve_source("wav2vec2_cnn")
    points = torch.cat(list(frames(stream_features(synth_dir, "mfcc", progress=False))))
    model = fitted(39, data=points)
    report = label_data_dir(model, synth_dir, "mfcc", tmp_path / "labels", ark=True, progress=False)
    labels, rate = read_labels(tmp_path / "labels")
    assert rate == 100.0
    samples = num_samples(synth_dir)
    assert set(labels) == set(samples)
    for utt, count in samples.items():
        assert len(labels[utt]) == int(source.output_lengths(torch.tensor([count]))[0]), utt
        assert 0 <= int(labels[utt].min()) and int(labels[utt].max()) < 6
    assert report.n_frames == sum(len(v) for v in labels.values())
    # The Kaldi ark holds the same labels (a dir with only the scp, as older ones, is read through it).
    ark_only = tmp_path / "ark_only"
    ark_only.mkdir()
    for name in ("labels.scp", "frame_rate"):
        (ark_only / name).write_bytes((tmp_path / "labels" / name).read_bytes())
    from_ark, _ = read_labels(ark_only)
    assert isinstance(from_ark, dict) and set(from_ark) == set(labels)
    assert all(torch.equal(from_ark[utt], labels[utt]) for utt in labels)


def test_labels_do_not_depend_on_batching(synth_dir, tmp_path):
    model = fitted(39, data=torch.cat(list(frames(stream_features(synth_dir, "mfcc", progress=False)))))
    label_data_dir(model, synth_dir, "mfcc", tmp_path / "big", batch_seconds=100.0, progress=False)
    label_data_dir(model, synth_dir, "mfcc", tmp_path / "one", batch_seconds=0.5, progress=False)  # one utt per batch
    big, _ = read_labels(tmp_path / "big")
    one, _ = read_labels(tmp_path / "one")
    assert all(torch.equal(big[utt], one[utt]) for utt in big)


@pytest.mark.parametrize("kind", ["frame", "waveform"])
def test_encoder_layer_labels_line_up_with_tokens(synth_dir, tmp_path, kind):
    from audiossl.encoders import create_encoder
    from audiossl.testing.configs import TINY_BINS, tiny_encoder_config

    torch.manual_seed(0)
    encoder = create_encoder("conformer", config=tiny_encoder_config("conformer", kind)).eval()
    frontend = create_frontend("fbank", num_mel_bins=TINY_BINS) if kind == "frame" else None
    source = EncoderFeatures(frontend, encoder, layer=1)
    # frame: 10 ms fbank frames stacked by 2 -> 50 Hz; waveform: the tiny CNN's 40-sample hop -> 400 Hz.
    assert frame_rate(source) == (50.0 if kind == "frame" else 400.0)
    model = fitted(source.num_channels, n_clusters=4)
    label_data_dir(model, synth_dir, source, tmp_path / "labels", progress=False)
    labels, rate = read_labels(tmp_path / "labels")
    assert rate == frame_rate(source)
    for utt, count in num_samples(synth_dir).items():
        expected = source.output_lengths(torch.tensor([count]))
        assert len(labels[utt]) == int(expected[0]), utt
    # The features are the hidden states of block 1 (and -1 is the last block).
    waveforms = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([8000, 5000])
    features, feature_lengths = source(waveforms, lengths)
    inputs = (waveforms, lengths) if frontend is None else frontend(waveforms, lengths)
    with torch.no_grad():
        output = encoder(*inputs)
    assert torch.equal(feature_lengths, output.lengths)
    torch.testing.assert_close(features, output.layers[0])
    torch.testing.assert_close(EncoderFeatures(frontend, encoder, layer=-1)(waveforms, lengths)[0], output.layers[-1])
    with pytest.raises(ConfigError, match="layer"):
        EncoderFeatures(frontend, encoder, layer=0)


def test_alignment_check_names_the_utterance():
    labels = {"a": torch.arange(10), "b": torch.arange(7)}
    aligned = check_label_alignment(labels, {"a": 11, "b": 6})  # one frame either way: padded / cut
    assert aligned["a"].tolist() == list(range(10)) + [9]
    assert aligned["b"].tolist() == list(range(6))
    with pytest.raises(DataError, match=r"'b' has 7 labels but the encoder gives 9 frames"):
        check_label_alignment(labels, {"a": 10, "b": 9}, source="labels")
    with pytest.raises(DataError, match="no labels for utterance 'c'"):
        check_label_alignment(labels, {"c": 3})


def test_rate_conversion_follows_frame_starts():
    labels = torch.arange(10)
    assert convert_label_rate(labels, 100.0, 50.0).tolist() == [0, 2, 4, 6, 8]
    assert convert_label_rate(labels[:3], 50.0, 100.0).tolist() == [0, 0, 1, 1, 2, 2]
    # 100 Hz MFCC labels for the wav2vec 2.0 CNN (50 Hz): CNN frame t starts where MFCC frame 2t does.
    mfcc, cnn = create_frontend("mfcc"), create_frontend("wav2vec2_cnn")
    assert cnn.frame_shift == 2 * mfcc.frame_shift
    samples = torch.tensor([16000 * 3 + 123])
    mfcc_frames, cnn_frames = int(mfcc.output_lengths(samples)[0]), int(cnn.output_lengths(samples)[0])
    converted = convert_label_rate(torch.arange(mfcc_frames), 100.0, 50.0, num_frames=cnn_frames)
    assert len(converted) == cnn_frames
    assert converted.tolist() == [2 * t for t in range(cnn_frames)]


def test_label_files_round_trip_and_errors(tmp_path):
    labels = {"u2": torch.tensor([3, 1, 4]), "u1": torch.tensor([1, 5])}
    write_labels(tmp_path / "lab", labels, 50.0, store=False)  # the text layout of label dirs before the store
    read, rate = read_labels(tmp_path / "lab" / "labels")
    assert rate == 50.0 and {k: v.tolist() for k, v in read.items()} == {"u1": [1, 5], "u2": [3, 1, 4]}
    assert (tmp_path / "lab" / "labels").read_text().splitlines()[0] == "u1 1 5"  # Kaldi order
    (tmp_path / "lab" / "labels").write_text("u1 1 x\n")
    with pytest.raises(DataError, match=r"labels:1: labels of 'u1' must be integers"):
        read_labels(tmp_path / "lab")
    (tmp_path / "lab" / "frame_rate").unlink()
    with pytest.raises(DataError, match="frame_rate"):
        read_labels(tmp_path / "lab")


def test_stream_sampling_epochs_and_dump(synth_dir, tmp_path):
    def ids_of(**options):
        return [utt for ids, _ in stream_features(synth_dir, "mfcc", progress=False, **options) for utt in ids]

    all_ids = ids_of(batch_seconds=2.0)
    assert sorted(all_ids) == sorted(num_samples(synth_dir))
    half = ids_of(sample_fraction=0.5, seed=3)
    assert len(half) == 2 and half == ids_of(sample_fraction=0.5, seed=3)
    assert sorted(ids_of(sample_fraction=0.5, seed=3, epoch=1)) == sorted(half)  # same subset every epoch
    epochs = {tuple(ids_of(batch_seconds=2.0, epoch=e)) for e in range(6)}
    assert len(epochs) > 1  # the order changes with the epoch
    both = [utt for ids, _ in stream_features([synth_dir, synth_dir], "mfcc", progress=False) for utt in ids]
    assert sorted(both) == sorted(all_ids * 2)
    dump = dump_features(stream_features(synth_dir, "mfcc", progress=False), tmp_path / "dump")
    streamed = torch.cat(list(frames(stream_features(synth_dir, "mfcc", progress=False))))
    dumped = torch.cat(list(FeatureDump(tmp_path / "dump").batches()))
    assert dump.num_frames == len(streamed) and dump.dim == 39
    # Same frames (the shard order is shuffled): compare sorted rows.
    assert torch.equal(torch.sort(dumped.sum(dim=1)).values, torch.sort(streamed.sum(dim=1)).values)
    with pytest.raises(DataError, match="index.json"):
        FeatureDump(tmp_path)
