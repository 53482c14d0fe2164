"""Speech-to-speech VC end to end on the synthetic corpus: train on a tiny upstream, convert, evaluate; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiossl.cli.main import main
from audiossl.data.kaldi import read_table
from audiossl.downstream.trainer import DownstreamConfig, train_downstream
from audiossl.errors import DataError
from audiossl_speecht5.s2s import S2STask
from audiossl_speecht5.speech_eval import speaker_scores

COMMON = ["--device", "cpu", "--batch-seconds", "8", "--max-frames", "400"]


@pytest.fixture(scope="module")
def run(corpus, pretrained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s2s") / "run"
    code = main(["s2s", "train", str(corpus), "--out", str(out), "--upstream", str(pretrained), "--decoder-layers",
                 "1", "--max-steps", "2", "--set", "log_every=1", *COMMON])  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def sv_run(corpus, pretrained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sv") / "run"
    code = main(["sv", "train", str(corpus), "--out", str(out), "-u", str(pretrained), "--max-steps", "1",
                 "--device", "cpu", "--batch-seconds", "8"])  # fmt: skip
    assert code == 0
    return out


def test_training_rebuilds_log_mels(run) -> None:
    records = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    assert len(train) == 2 and set(train[0]["parts"]) == {"l1_before", "l1_after", "stop"}
    assert json.loads((run / "task_state.json").read_text())["speakers"] == ["spk01", "spk02"]


def test_convert_to_a_named_speaker(run, corpus, tmp_path) -> None:
    code = main(["s2s", "convert", str(run), str(corpus), "--out", str(tmp_path / "conv"), "--speaker", "spk02"])
    assert code == 0
    converted = read_table(tmp_path / "conv" / "utt2spk")
    assert set(converted) == set(read_table(corpus / "wav.scp")) and set(converted.values()) == {"spk02"}
    wave, rate = sf.read(read_table(tmp_path / "conv" / "wav.scp")[next(iter(converted))])
    assert rate == 16000 and np.isfinite(wave).all()


def test_unknown_target_speaker_exits_2(run, corpus, tmp_path, capsys) -> None:
    code = main(["s2s", "convert", str(run), str(corpus), "--out", str(tmp_path / "c"), "--speaker", "spk99"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown speaker 'spk99'" in err and "spk01, spk02" in err and "Traceback" not in err


def test_evaluate_reports_reconstruction_and_similarity(run, sv_run, corpus, tmp_path) -> None:
    code = main(["s2s", "evaluate", str(run), str(corpus), "--out", str(tmp_path / "ev"), "--sv", str(sv_run)])
    assert code == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    assert metrics["reconstruction_mcd"] > 0 and metrics["reconstruction_mcd_utterances"] == 8
    for key in ("converted_target_cosine", "converted_source_cosine"):
        assert -1.0 <= metrics[key] <= 1.0
    targets = read_table(tmp_path / "ev" / "converted" / "utt2spk")
    sources = read_table(corpus / "utt2spk")
    assert all(targets[u] != sources[u] for u in targets)  # every utterance goes to the other speaker


def test_speaker_scores_identify_real_speakers(sv_run, corpus) -> None:
    """Recordings scored as if generated: each is compared with its own speaker's centroid, itself left out."""
    sources = read_table(corpus / "utt2spk")
    scores = speaker_scores(sv_run, {"real": corpus}, corpus, sources)
    assert -1.0 <= scores["real_speaker_cosine"] <= 1.0 and 0.0 <= scores["real_speaker_id_accuracy"] <= 1.0


def test_utterances_longer_than_the_decoder_are_named(corpus, tmp_path) -> None:
    durations = {utt: float(v) for utt, v in read_table(corpus / "utt2dur").items()}
    long = sorted(utt for utt, d in durations.items() if round(d * 16000) // 160 > 120)
    assert long
    config = DownstreamConfig(max_steps=1, device="cpu")
    with pytest.raises(DataError, match="maximum of 120 mel frames") as caught:
        train_downstream(S2STask(max_frames=120), "fbank:16000:32", corpus, tmp_path / "run", config)
    assert repr(long[0]) in str(caught.value)
