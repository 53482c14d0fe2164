"""Pairs and mixtures: deterministic, at the SNR / level asked, never a speaker with themselves; bad input refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from audiossl_enhance.mixtures import MixSettings, NoiseSettings, make_mixtures, make_noisy_pairs, pair_dirs

from audiossl.data.kaldi import DataDir, read_table
from audiossl.errors import ConfigError, DataError


def _read(path: str) -> np.ndarray:
    return sf.read(path, dtype="float64")[0]


def test_noisy_pairs_have_the_drawn_snr_and_are_deterministic(tmp_path, corpus, pairs):
    snrs = {utt: float(value) for utt, value in read_table(pairs / "utt2snr").items()}
    clean_paths, noisy_paths = read_table(pairs / "utt2clean"), read_table(pairs / "wav.scp")
    assert set(snrs) == set(DataDir.load(corpus).utterance_ids)
    for utt, seconds in read_table(pairs / "utt2dur").items():
        assert float(seconds) == pytest.approx(sf.info(noisy_paths[utt]).duration, abs=1e-4)
    for utt, snr in snrs.items():
        clean, noisy = _read(clean_paths[utt]), _read(noisy_paths[utt])
        measured = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
        assert measured == pytest.approx(snr, abs=0.01)
    again = make_noisy_pairs(corpus, tmp_path / "again", NoiseSettings(snrs_db=(0.0,), noise_kinds=("white",), seed=1))
    for utt, path in again.wav_scp.items():
        assert np.array_equal(_read(path), _read(noisy_paths[utt]))  # float WAVs carry a time stamp (PEAK chunk)
    other = make_noisy_pairs(corpus, tmp_path / "other", NoiseSettings(snrs_db=(0.0,), noise_kinds=("white",), seed=2))
    utt = next(iter(other.wav_scp))
    assert not np.allclose(_read(other.wav_scp[utt]), _read(noisy_paths[utt]))


def test_snrs_are_drawn_from_the_list(tmp_path, corpus):
    made = make_noisy_pairs(corpus, tmp_path / "p", NoiseSettings(snrs_db=(-5.0, 20.0), noise_kinds=("pink",)))
    assert set(made.labels["snr"].values()) <= {"-5", "20"}
    assert len(set(made.labels["snr"].values())) == 2  # nine utterances: both values drawn


def test_other_settings_in_the_same_dir_are_refused(tmp_path, corpus):
    make_noisy_pairs(corpus, tmp_path / "p", NoiseSettings(snrs_db=(5.0,), noise_kinds=("white",)))
    with pytest.raises(ConfigError, match="snrs_db"):
        make_noisy_pairs(corpus, tmp_path / "p", NoiseSettings(snrs_db=(10.0,), noise_kinds=("white",)))


def test_mixtures_never_mix_a_speaker_with_themselves_and_sum_to_the_mixture(tmp_path, corpus, mixtures):
    data = DataDir.load(mixtures)
    source = DataDir.load(corpus)
    assert len(data.utterance_ids) == len(source.utterance_ids)
    for utt in data.utterance_ids:
        first, second = utt.split("_")
        assert source.utt2spk[first] == data.utt2spk[utt] != data.labels["spk2"][utt] == source.utt2spk[second]
        assert abs(float(data.labels["level"][utt])) <= 5.0
        s1, s2, mix = _read(data.labels["src1"][utt]), _read(data.labels["src2"][utt]), _read(data.wav_scp[utt])
        assert np.allclose(s1 + s2, mix, atol=1e-6)
    again = make_mixtures(corpus, tmp_path / "again", MixSettings(seed=2))
    assert again.wav_scp.keys() == data.wav_scp.keys()
    for utt, path in again.wav_scp.items():
        assert np.array_equal(_read(path), _read(data.wav_scp[utt]))


def test_mixtures_need_two_speakers(tmp_path, corpus):
    one = tmp_path / "one"
    shutil.copytree(corpus, one)
    table = read_table(one / "utt2spk")
    (one / "utt2spk").write_text("".join(f"{utt} spk01\n" for utt in table))
    (one / "spk2utt").unlink()
    with pytest.raises(DataError, match="only one speaker") as error:
        make_mixtures(one, tmp_path / "out")
    assert error.value.path == str(one / "utt2spk")


def test_given_pairs_must_match(tmp_path, corpus, pairs):
    clean = tmp_path / "clean"
    shutil.copytree(corpus, clean)
    made = pair_dirs(clean, pairs, tmp_path / "ok")
    assert made.wav_scp.keys() == read_table(pairs / "wav.scp").keys()
    noisy = tmp_path / "noisy"
    shutil.copytree(pairs, noisy)
    lines = (noisy / "wav.scp").read_text().splitlines()
    (noisy / "wav.scp").write_text("\n".join(lines[:-1] + [lines[-1].replace(lines[-1].split()[0], "zz-extra")]) + "\n")
    with pytest.raises(DataError) as error:
        pair_dirs(clean, noisy, tmp_path / "bad")
    assert error.value.path == str(noisy / "wav.scp")
    short = tmp_path / "short"
    shutil.copytree(pairs, short)
    utt, path = next(iter(read_table(short / "wav.scp").items()))
    sf.write(path.replace(str(pairs), str(short)), _read(path)[:-100], 16000, subtype="FLOAT")
    (short / "wav.scp").write_text((short / "wav.scp").read_text().replace(str(pairs), str(short)))
    with pytest.raises(DataError, match="one length") as error:
        pair_dirs(clean, short, tmp_path / "bad2")
    assert error.value.path == str(short / "wav.scp") and error.value.line == 1


def test_utterances_shorter_than_the_floor_are_left_out(tmp_path, corpus):
    durations = {utt: float(value) for utt, value in read_table(corpus / "utt2dur").items()}
    floor = sorted(durations.values())[3]  # the three shortest fall below it
    made = make_noisy_pairs(corpus, tmp_path / "p", NoiseSettings(noise_kinds=("white",), min_seconds=floor))
    assert set(made.wav_scp) == {utt for utt, seconds in durations.items() if seconds >= floor}
    mixed = make_mixtures(corpus, tmp_path / "m", MixSettings(min_seconds=floor))
    for utt in mixed.wav_scp:
        assert all(durations[part] >= floor for part in utt.split("_"))
    with pytest.raises(DataError, match="no utterance lasts"):
        make_noisy_pairs(corpus, tmp_path / "q", NoiseSettings(min_seconds=1000.0))
