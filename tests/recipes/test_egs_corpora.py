"""Corpus preparation (LibriSpeech, VoxCeleb, IEMOCAP, VCTK) on fake corpora in the real layouts, and
their egs/*/run.sh end to end in smoke mode.

The LibriSpeech recipe runs every pretraining stage (HuBERT iterations 1 and 2, wav2vec 2.0) once;
its HuBERT checkpoint is the --upstream of the IEMOCAP and VCTK recipes, which skip pretraining.
The VoxCeleb recipe runs its own DINO stages (iteration 1, pseudo-speakers, cluster-aware iteration).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from fake_corpora import fake_iemocap, fake_librispeech, fake_vctk, fake_voxceleb

from audiossl.data.combine import combine
from audiossl.data.corpora.iemocap import prepare_iemocap
from audiossl.data.corpora.librispeech import prepare_librispeech
from audiossl.data.corpora.vctk import prepare_vctk
from audiossl.data.corpora.voxceleb import prepare_voxceleb
from audiossl.data.folds import group_folds
from audiossl.data.kaldi import DataDir
from audiossl.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SMOKE = ["--smoke", "true", "--ngpu", "0", "--nj", "1"]


def run_recipe(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["bash", str(REPO / script), *args], capture_output=True, text=True, env=env, timeout=1800)


def assert_c_sorted(data_dir: Path) -> None:
    """Every table's ids are in byte order (LC_ALL=C sort), independently of our writer."""
    for table in ("wav.scp", "utt2spk", "spk2utt", "text", "utt2dur", "utt2emo", "utt2session"):
        if (data_dir / table).exists():
            keys = [line.split(" ", 1)[0].encode() for line in (data_dir / table).read_text().splitlines()]
            assert keys == sorted(keys) and len(keys) == len(set(keys)), table


# ---------------------------------------------------------------- fake corpora (built once per session)


@pytest.fixture(scope="session")
def librispeech(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("librispeech")
    return root, fake_librispeech(root / "corpus", root / "synth")


@pytest.fixture(scope="session")
def voxceleb(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("voxceleb")
    return root / "corpus", fake_voxceleb(root / "corpus", root / "synth")


@pytest.fixture(scope="session")
def iemocap(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("iemocap")
    return root / "corpus", fake_iemocap(root / "corpus", root / "synth")


@pytest.fixture(scope="session")
def vctk(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("vctk")
    return root / "corpus", fake_vctk(root / "corpus", root / "synth")


# ---------------------------------------------------------------- preparation


def test_librispeech_tables(librispeech, tmp_path):
    root, expected = librispeech
    prepared = prepare_librispeech(root / "corpus", tmp_path)  # the folder the archives were extracted in
    assert sorted(prepared) == sorted(expected)
    for part, texts in expected.items():
        out = tmp_path / part.replace("-", "_")
        assert_c_sorted(out)
        data = DataDir.load(out)
        assert data.text == texts
        assert {utt: spk for utt, spk in data.utt2spk.items()} == {utt: utt.split("-")[0] for utt in texts}
        for utt, path in data.wav_scp.items():
            assert Path(path).is_absolute() and Path(path).name == f"{utt}.flac"
            info = soundfile.info(path)
            assert data.utt2num_samples[utt] == info.frames
            assert abs(data.utt2dur[utt] - info.frames / info.samplerate) < 1e-4
    ids = DataDir.load(tmp_path / "train_clean_100").utterance_ids
    assert ids[0].startswith("103-") and ids[3].startswith("1034-")  # '-' sorts before the 4 of 1034
    only = prepare_librispeech(root / "corpus" / "LibriSpeech", tmp_path / "one", ["dev-clean"])
    assert list(only) == ["dev-clean"] and [p.name for p in (tmp_path / "one").iterdir()] == ["dev_clean"]


def test_librispeech_errors_name_the_file(librispeech, tmp_path):
    root, _ = librispeech
    with pytest.raises(DataError, match="LibriSpeech not found: put the corpus here .*openslr.org/12") as missing:
        prepare_librispeech(tmp_path / "nowhere", tmp_path / "out")
    assert str(tmp_path / "nowhere") in str(missing.value)
    with pytest.raises(DataError, match="part train-other-500 not found"):
        prepare_librispeech(root / "corpus", tmp_path / "out", ["train-other-500"])
    copy = tmp_path / "copy"
    shutil.copytree(root / "corpus" / "LibriSpeech" / "dev-clean", copy / "LibriSpeech" / "dev-clean")
    chapter = next((copy / "LibriSpeech" / "dev-clean" / "103").iterdir())
    transcript = next(chapter.glob("*.trans.txt"))
    lines = transcript.read_text().splitlines()
    transcript.write_text("\n".join(lines[1:]) + "\n")  # the first flac loses its line
    with pytest.raises(DataError, match="1 flac file\\(s\\) have no line in"):
        prepare_librispeech(copy, tmp_path / "out")
    transcript.write_text("\n".join([*lines, f"{chapter.parent.name}-{chapter.name}-0099 EXTRA"]) + "\n")
    with pytest.raises(DataError, match="no 103-.*-0099.flac beside this transcript") as orphan:
        prepare_librispeech(copy, tmp_path / "out")
    assert f"{transcript}:{len(lines) + 1}" in str(orphan.value)


def test_voxceleb_dev_test_and_official_trials(voxceleb, tmp_path):
    corpus, trials = voxceleb
    parts = prepare_voxceleb([corpus], tmp_path, trials)
    for name in ("dev", "test"):
        assert_c_sorted(tmp_path / name)
    assert set(parts["test"].utt2spk.values()) == {"id10270", "id10271", "id10272"}  # the speakers in the trials
    assert set(parts["dev"].utt2spk.values()) == {"id10001", "id10002", "id10003"}
    assert "id10002-C7k7C-PDvAA-00001" in parts["dev"].wav_scp  # video ids keep their '-'
    official = [line.split() for line in trials.read_text().splitlines()]
    converted = [line.split() for line in (tmp_path / "test" / "trials").read_text().splitlines()]
    assert len(converted) == len(official)
    for (label, enroll, test), (label2, enroll2, test2) in zip(official, converted, strict=True):
        assert label == label2
        assert parts["test"].wav_scp[enroll2].endswith(enroll) and parts["test"].wav_scp[test2].endswith(test)
    bad = tmp_path / "bad_trials.txt"
    bad.write_text(f"{trials.read_text().splitlines()[0]}\n1 id10270/5r0dWxy17C8/00009.wav id10271/x/00001.wav\n")
    with pytest.raises(DataError, match="id10270/5r0dWxy17C8/00009.wav is not in the prepared corpus") as error:
        prepare_voxceleb([corpus], tmp_path / "bad", bad)
    assert f"{bad}:2" in str(error.value)
    with pytest.raises(DataError, match="request access at https://mm.kaist.ac.kr"):
        prepare_voxceleb([tmp_path / "nowhere"], tmp_path / "none")


def test_voxceleb2_m4a_durations_come_from_the_header(tmp_path):
    import torch
    from torchcodec.encoders import AudioEncoder

    for speaker, seconds in (("id00012", 1.0), ("id00015", 2.0)):
        path = tmp_path / "vox2" / "dev" / "aac" / speaker / "21Uxsk56VDQ" / "00001.m4a"
        path.parent.mkdir(parents=True)
        AudioEncoder(0.1 * torch.randn(1, int(16000 * seconds)), sample_rate=16000).to_file(str(path))
    dev = prepare_voxceleb([tmp_path / "vox2"], tmp_path / "out")["dev"]
    assert dev.utt2dur == {"id00012-21Uxsk56VDQ-00001": 1.0, "id00015-21Uxsk56VDQ-00001": 2.0}
    assert not (tmp_path / "out" / "dev" / "utt2num_samples").exists()  # AAC headers give no exact count


def test_iemocap_four_classes_sessions_and_speakers(iemocap, tmp_path):
    corpus, expected = iemocap
    data = prepare_iemocap(corpus, tmp_path / "four")
    assert_c_sorted(tmp_path / "four")
    assert data.labels["emo"] == {utt: emo for utt, (emo, _) in expected.items()}  # exc -> hap; fru, xxx dropped
    assert data.labels["session"] == {utt: session for utt, (_, session) in expected.items()}
    assert "exc" not in data.labels["emo"].values() and set(data.labels["emo"].values()) <= {"neu", "hap", "ang", "sad"}
    for utt, speaker in data.utt2spk.items():  # the speaker is the last field's gender, not the dialogue's
        name = utt.split("-", 1)[1]
        assert utt.startswith(f"{speaker}-") and speaker == name[:5] + name.split("_")[-1][0]
    assert "Ses01M" in data.utt2spk.values()
    assert all(text for text in data.text.values())
    everything = prepare_iemocap(corpus / "IEMOCAP_full_release", tmp_path / "all", four_class=False)
    assert {"exc", "fru"} <= set(everything.labels["emo"].values()) and "xxx" not in everything.labels["emo"].values()
    with pytest.raises(DataError, match="IEMOCAP not found: .*sail.usc.edu"):
        prepare_iemocap(tmp_path / "nowhere", tmp_path / "none")


def test_vctk_one_microphone_and_untranscribed_recordings(vctk, tmp_path):
    corpus, expected = vctk
    data, left_out = prepare_vctk(corpus, tmp_path / "mic1")
    assert_c_sorted(tmp_path / "mic1")
    assert data.text == expected and left_out == 4  # p315's four recordings have no transcript
    assert all(path.endswith("_mic1.flac") for path in data.wav_scp.values())
    assert set(data.utt2spk.values()) == {"p225", "p226", "s5"}
    first = data.utterance_ids[0]
    assert data.utt2num_samples[first] == soundfile.info(data.wav_scp[first]).frames  # 48 kHz, as recorded
    kept, _ = prepare_vctk(corpus / "VCTK-Corpus-0.92", tmp_path / "mic2", mic="mic2", require_text=False)
    assert kept.text is None and "p315-001" in kept.wav_scp and kept.wav_scp["p315-001"].endswith("_mic2.flac")
    with pytest.raises(DataError, match="VCTK 0.92 not found: .*datashare.ed.ac.uk"):
        prepare_vctk(tmp_path / "nowhere", tmp_path / "none")


def test_session_folds_and_combined_parts(iemocap, librispeech, tmp_path):
    corpus, expected = iemocap
    data = prepare_iemocap(corpus, tmp_path / "iemocap")
    folds = group_folds(DataDir.load(tmp_path / "iemocap"), "session")
    assert list(folds) == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]
    for session, (train, test) in folds.items():
        assert set(test.labels["session"].values()) == {session}
        assert session not in set(train.labels["session"].values())
        assert sorted(train.utterance_ids + test.utterance_ids) == sorted(data.utterance_ids)
        assert not set(train.utt2spk.values()) & set(test.utt2spk.values())  # both speakers of the session are unseen
    root, parts = librispeech
    prepare_librispeech(root / "corpus", tmp_path / "ls", ["dev-clean", "test-clean"])
    both = combine([tmp_path / "ls" / "dev_clean", tmp_path / "ls" / "test_clean"])
    assert both.text == {**parts["dev-clean"], **parts["test-clean"]}
    assert set(both.wav_scp) == set(both.utt2dur) == set(both.text)
    with pytest.raises(DataError, match="is in both"):
        combine([tmp_path / "ls" / "dev_clean", tmp_path / "ls" / "dev_clean"])


@pytest.mark.parametrize(
    "path",
    [
        "egs/librispeech/ssl1/conf/hubert_base.yaml",
        "egs/librispeech/ssl1/conf/wav2vec2_base.yaml",
        "egs/voxceleb/sv1/conf/dino_base.yaml",
        "egs/iemocap/er1/conf/mspm_ast_base.yaml",
    ],
)
def test_egs_configs_are_valid_base_size_pretraining_configs(path):
    from audiossl.config import from_dict
    from audiossl.objectives.base import OBJECTIVES
    from audiossl.train.config import resolve_config

    config = resolve_config(REPO / path)
    assert config.encoder.preset == "base" and config.run.max_steps >= 30000
    objective = dict(config.objective.config)
    if config.objective.name == "dino":
        assert objective["momentum_steps"] == config.run.max_steps
    if config.objective.name == "hubert":
        objective["num_clusters"] = 100  # what recipes/ssl.sh's label dir provides
    from_dict(OBJECTIVES.get(config.objective.name).config_class, objective)  # unknown keys are errors


# ---------------------------------------------------------------- egs/*/run.sh in smoke mode


def metrics(path: Path) -> dict:
    return json.loads(path.read_text())["metrics"]


@pytest.fixture(scope="session")
def librispeech_run(librispeech, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """egs/librispeech/ssl1 end to end: HuBERT 1+2, wav2vec 2.0, ASR on both, report."""
    root, _ = librispeech
    out = tmp_path_factory.mktemp("librispeech_run")
    result = run_recipe(
        "egs/librispeech/ssl1/run.sh", *SMOKE, "--corpus_dir", str(root / "corpus"),
        "--pretrain_parts", "train-clean-100", "--data_dir", str(out / "data"), "--exp_dir", str(out / "exp"),
    )  # fmt: skip
    return out, result


def test_librispeech_recipe_smoke(librispeech_run):
    out, result = librispeech_run
    assert result.returncode == 0, result.stderr[-3000:]
    exp = out / "exp"
    assert "LibriSpeech parts already in" in result.stderr and "no download" in result.stderr
    assert DataDir.load(out / "data" / "pretrain").wav_scp == DataDir.load(out / "data" / "train_clean_100").wav_scp
    for labels in ("hubert/iter1/labels", "hubert/iter2/labels"):  # MFCC clusters, then clusters of iteration 1
        assert (exp / labels).is_dir(), labels
    for run in ("hubert/iter2/pretrain", "wav2vec2/iter1/pretrain"):
        assert list((exp / run).glob("ckpt-*.pt")), run
    for asr in ("asr_hubert", "asr_wav2vec2"):
        scores = metrics(exp / asr / "decode_greedy" / "metrics.json")
        assert scores["reference_words"] > 0 and scores["wer"] >= 0
    report = (exp / "report.md").read_text()
    assert "# audiossl on LibriSpeech" in report and "asr_hubert" in report and "asr_wav2vec2" in report


def test_voxceleb_recipe_smoke_with_dino_iterations(voxceleb, tmp_path):
    corpus, trials = voxceleb
    exp = tmp_path / "exp"
    result = run_recipe(
        "egs/voxceleb/sv1/run.sh", *SMOKE, "--vox1_dir", str(corpus), "--trials", str(trials),
        "--data_dir", str(tmp_path / "data"), "--exp_dir", str(exp),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "data" / "vox1" / "test" / "trials").is_file()
    assert (exp / "dino" / "cluster" / "utt2pseudo").is_file()
    cluster = (exp / "dino_cluster" / "iter1" / "pretrain" / "config.yaml").read_text()
    assert f"{exp}/dino/cluster/utt2pseudo" in cluster  # iteration 2 trained on the pseudo-speakers
    for evaluation in ("eval", "eval_frozen"):
        scores = metrics(exp / "sv" / evaluation / "metrics.json")
        assert scores["num_trials"] > 0 and 0 <= scores["eer_percent"] <= 100
    assert "## sv" in (exp / "report.md").read_text()
    # Without the trial list the recipe stops before doing anything, saying where to get it.
    missing = run_recipe(
        "egs/voxceleb/sv1/run.sh", *SMOKE, "--vox1_dir", str(corpus), "--trials", str(tmp_path / "veri_test2.txt"),
        "--exp_dir", str(exp / "x"),
    )  # fmt: skip
    assert missing.returncode == 1 and "veri_test2.txt not found: download https://mm.kaist.ac.kr" in missing.stderr


def test_iemocap_recipe_smoke_session_folds(iemocap, librispeech_run, tmp_path):
    corpus, _ = iemocap
    upstream = librispeech_run[0] / "exp" / "hubert" / "iter2" / "pretrain"
    exp, data = tmp_path / "exp", tmp_path / "data"
    result = run_recipe(
        "egs/iemocap/er1/run.sh", *SMOKE, "--corpus_dir", str(corpus), "--upstream", str(upstream),
        "--sessions", "Ses01 Ses02", "--data_dir", str(data), "--exp_dir", str(exp),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pretraining skipped" in result.stderr
    for session in ("Ses01", "Ses02"):
        test_ids = set(DataDir.load(data / "folds" / session / "test").utterance_ids)
        predicted = dict(
            line.split() for line in (exp / "er" / session / "eval" / "utt2emo_pred").read_text().splitlines()
        )
        assert set(predicted) == test_ids and {utt[:5] for utt in test_ids} == {session}
        scores = metrics(exp / "er" / session / "eval" / "metrics.json")
        assert 0 <= scores["UA"] <= 1 and 0 <= scores["WA"] <= 1
    assert not (exp / "er" / "Ses03").exists()
    assert "confusion.png" in (exp / "report.md").read_text()
    absent = run_recipe("egs/iemocap/er1/run.sh", *SMOKE, "--corpus_dir", str(tmp_path / "nowhere"),
                        "--exp_dir", str(tmp_path / "absent"))  # fmt: skip
    assert absent.returncode == 1 and "IEMOCAP not found" in absent.stderr and "sail.usc.edu" in absent.stderr
    assert f"full log: {tmp_path}/absent/logs/stage1.log" in absent.stderr


def test_vctk_recipe_smoke_resumes_from_a_later_stage(vctk, librispeech_run, tmp_path):
    corpus, _ = vctk
    upstream = librispeech_run[0] / "exp" / "hubert" / "iter2" / "pretrain"
    exp, data = tmp_path / "exp", tmp_path / "data"
    common = [*SMOKE, "--corpus_dir", str(corpus), "--upstream", str(upstream), "--data_dir", str(data),
              "--exp_dir", str(exp)]  # fmt: skip
    first = run_recipe("egs/vctk/vc1/run.sh", *common, "--stop_stage", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "VCTK already in" in first.stderr and not (exp / "vc").exists()
    made = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}
    rest = run_recipe("egs/vctk/vc1/run.sh", *common, "--stage", "5")
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "stage 2:" not in rest.stderr and "stage 4:" not in rest.stderr  # earlier stages neither rerun nor asked
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()} == made  # their outputs are reused
    assert (exp / "vc" / "example" / "converted.wav").stat().st_size > 44
    vc = json.loads((exp / "vc" / "eval" / "metrics.json").read_text())
    assert len(vc["pairs"]) == 2 and vc["similarity"]  # --pairs 2 in smoke mode
    assert "## vc" in (exp / "report.md").read_text()
